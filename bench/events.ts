// pnpm bench:events: webhook delivery on loopback. A server that does not deliver commits a
// backlog of lifecycle events (task.created, 16 clients creating tasks); a second server starts
// and drains it to a loopback receiver (deliveries per second); then events are committed one at
// a time and each one's commit-to-arrival time is noted. Baseline, in the same run: the same
// bodies POSTed straight at the receiver by 8 loops (the delivery concurrency), no database in
// between. Prints a table; writes bench/results/events.json.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient } from '../packages/client/src/index.ts';
import { quantile, withDatabase } from './support.ts';

const events = Number(process.env.BENCH_EVENTS ?? 2000);
const clients = 16;
const token = `bench-${randomBytes(24).toString('hex')}`;

const round = (n: number) => Math.round(n * 100) / 100;

/** A loopback endpoint answering 204, noting each body's arrival. */
async function receiver() {
  const arrivals: Array<{ at: number; body: string }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      arrivals.push({ at: Date.now(), body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return { url, arrivals, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The baseline: `count` POSTs of `body` from 8 loops, with keep-alive; per second. */
async function barePosts(url: string, body: string, count: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let left = count;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) {
        await new Promise<void>((resolve, reject) => {
          const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } });
          req.on('response', (res) => res.resume().on('end', resolve));
          req.on('error', reject);
          req.end(body);
        });
      }
    }),
  );
  agent.destroy();
  return count / ((performance.now() - started) / 1000);
}

async function main(url: string) {
  const env = {
    DATABASE_URL: url,
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    HIATUS_BUILTIN_PROVISIONER: 'false',
    // The bench measures the server, not one key's share of it.
    HIATUS_RATE_LIMIT_PER_SECOND: '0',
    HIATUS_MAX_CONCURRENT_CALLS_PER_KEY: '1000',
  };
  const endpoint = await receiver();
  const agent = await new FakeAgent().start();
  // A server that commits events but leaves their delivery to others: a backlog builds up.
  const committer = await startServerProcess({ ...env, HIATUS_WEBHOOK_DELIVERY: 'false' });
  let deliverer: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  try {
    const client = createHiatusClient({ url: committer.url, token });
    await client.webhooks.create.mutate({ url: endpoint.url, eventTypes: ['task.created'] });
    const create = async (count: number, prefix: string) => {
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < count) {
            const i = next++;
            await client.tasks.create.mutate({
              name: `${prefix}-${i}`,
              prompt: 'bench',
              agentUrl: agent.url,
              sendPrompt: false,
            });
          }
        }),
      );
      return count / ((performance.now() - started) / 1000);
    };
    const until = async (count: number) => {
      const deadline = Date.now() + 180_000;
      while (endpoint.arrivals.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    };

    // 1. Drain: a backlog of `events`, delivered by a server that starts afterwards.
    const committedPerSecond = await create(events, 'backlog');
    deliverer = await startServerProcess(env);
    const drainStarted = Date.now();
    await until(events);
    const drained = endpoint.arrivals.slice(0, events);
    const deliveredPerSecond = drained.length / ((Math.max(...drained.map((a) => a.at)) - drainStarted) / 1000);

    // 2. Live: events committed one client at a time while the deliverer runs; commit to arrival.
    const live = Math.min(events, 500);
    for (let i = 0; i < live; i++) {
      await client.tasks.create.mutate({ name: `live-${i}`, prompt: 'bench', agentUrl: agent.url, sendPrompt: false });
    }
    await until(events + live);
    const arrivals = endpoint.arrivals.slice(0, events + live);
    const latencies = arrivals
      .slice(events)
      .map((a) => a.at - Date.parse((JSON.parse(a.body) as { occurredAt: string }).occurredAt))
      .sort((a, b) => a - b);
    const duplicates = arrivals.length - new Set(arrivals.map((a) => a.body)).size;

    // Baseline: the same bodies POSTed straight at the endpoint, no database.
    const bare = await barePosts(endpoint.url, arrivals[0]!.body, events);
    const result = {
      events,
      live,
      arrived: arrivals.length,
      duplicates,
      committedPerSecond: round(committedPerSecond),
      deliveredPerSecond: round(deliveredPerSecond),
      barePostsPerSecond: round(bare),
      deliveredVsBare: round(deliveredPerSecond / bare),
      commitToDeliveryMs: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: latencies.at(-1) },
    };
    console.table([
      { measure: `events committed / s (${clients} clients creating tasks)`, value: result.committedPerSecond },
      { measure: `backlog of ${events} delivered / s (signed, recorded)`, value: result.deliveredPerSecond },
      { measure: 'bare loopback POSTs / s (8 loops, no database)', value: result.barePostsPerSecond },
      { measure: 'delivered / bare', value: result.deliveredVsBare },
      { measure: `commit → delivery p50 ms (${live} events, one at a time)`, value: result.commitToDeliveryMs.p50 },
      { measure: 'commit → delivery p99 ms', value: result.commitToDeliveryMs.p99 },
      { measure: 'duplicates', value: result.duplicates },
    ]);
    const out = path.join(import.meta.dirname, 'results', 'events.json');
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${out}`);
  } finally {
    await deliverer?.stop();
    await committer.stop();
    await agent.stop();
    await endpoint.close();
  }
}

await withDatabase(main);
process.exit(0);
