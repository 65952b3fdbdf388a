// pnpm bench:auto-pause: how often R server processes sharing the auto-pause pass ask each agent
// about its status, against the one look an interval the pass aims at. 2,000 agents behind one
// loopback server, 3 processes, a 4 s interval: two intervals to settle once every task is active,
// then four measured. The test (apps/server/test/auto-pause-shared.test.ts) asserts the bound that
// holds at any speed (never more than once an interval); this is the figure, which depends on the
// machine. Prints a table; writes bench/results/auto-pause.json.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient } from '../packages/client/src/index.ts';
import { withDatabase, withoutKeyLimits } from './support.ts';

const agents = Number(process.env.BENCH_AGENTS ?? 2_000);
const intervalMs = Number(process.env.BENCH_AUTO_PAUSE_INTERVAL_MS ?? 4_000);
const processCount = Number(process.env.BENCH_PROCESSES ?? 3);
const measuredIntervals = 4;
const token = `bench-${randomBytes(24).toString('hex')}`;

/** Agents behind one loopback server, every status request noted per agent with its time. */
async function agentFarm() {
  const polls = new Map<number, number[]>();
  const server = http.createServer((req, res) => {
    const match = /^\/agents\/(\d+)\/(status|messages)$/.exec(req.url ?? '');
    if (!match || req.method !== 'GET') return void res.writeHead(404).end();
    const agent = Number(match[1]);
    if (match[2] === 'status') polls.set(agent, [...(polls.get(agent) ?? []), Date.now()]);
    const body = JSON.stringify(match[2] === 'status' ? { status: 'stable', agent_type: 'claude' } : { messages: [] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Status requests per agent between `from` and `to`. */
    between: (from: number, to: number) =>
      Array.from({ length: agents }, (_, i) => (polls.get(i) ?? []).filter((t) => t >= from && t < to).length),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function main(url: string) {
  const farm = await agentFarm();
  const env = {
    DATABASE_URL: url,
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: String(intervalMs),
    HIATUS_AUTO_PAUSE_WARNING_SECONDS: '0',
    ...withoutKeyLimits,
  };
  const processes: ServerProcess[] = [];
  try {
    // One migrates first; the others start on the current schema.
    processes.push(await startServerProcess(env));
    processes.push(...(await Promise.all(Array.from({ length: processCount - 1 }, () => startServerProcess(env)))));
    const clients = processes.map((p) => createHiatusClient({ url: p.url, token }));
    const ids: string[] = [];
    for (let first = 0; first < agents; first += 100) {
      const created = await Promise.all(
        Array.from({ length: Math.min(100, agents - first) }, (_, k) =>
          clients[(first + k) % processCount]!.tasks.create.mutate({
            name: `agent-${first + k}`,
            prompt: 'bench',
            agentUrl: `${farm.url}/agents/${first + k}`,
            // The farm's agents only answer status requests, which this bench counts.
            sendPrompt: false,
            idleTimeoutSeconds: 86_400,
          }),
        ),
      );
      ids.push(...created.map((c) => c.task.id));
    }
    // Every task active: from then on, every agent is due once an interval.
    for (;;) {
      const { items } = await clients[0]!.tasks.list.query({ status: 'initializing', limit: 1 });
      const pending = await clients[0]!.tasks.list.query({ status: 'pending', limit: 1 });
      if (items.length === 0 && pending.items.length === 0) break;
      await sleep(200);
    }
    // Two intervals to settle, then the measured ones.
    await sleep(2 * intervalMs);
    const from = Date.now();
    await sleep(measuredIntervals * intervalMs);
    const polls = farm.between(from, Date.now());
    const total = polls.reduce((a, b) => a + b, 0);
    const result = {
      agents,
      processes: processCount,
      intervalMs,
      measuredIntervals,
      statusRequests: total,
      perAgentPerInterval: Math.round((total / (agents * measuredIntervals)) * 1000) / 1000,
      perAgentMin: Math.min(...polls),
      perAgentMax: Math.max(...polls),
    };
    console.table([
      {
        measure: `status requests per agent per interval (aim: 0.8 to 1; ${processCount} alone would make ${processCount})`,
        value: result.perAgentPerInterval,
      },
      { measure: `fewest requests to one agent in ${measuredIntervals} intervals`, value: result.perAgentMin },
      { measure: `most requests to one agent in ${measuredIntervals} intervals`, value: result.perAgentMax },
    ]);
    const out = path.join(import.meta.dirname, 'results', 'auto-pause.json');
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${out}`);
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await farm.close();
  }
}

await withDatabase(main);
process.exit(0);
