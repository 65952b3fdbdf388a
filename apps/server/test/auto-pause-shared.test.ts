import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/connection.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

const adminToken = 'auto-pause-shared-admin-token-5e8a1c9d3b7f2046';
const agents = 2_000;
const intervalMs = 4_000;
const processCount = 3;

/**
 * Many agents behind one loopback server: `/agents/<n>/status` and `/messages` answer as AgentAPI
 * does, and every status request is counted per agent with its time.
 */
class AgentFarm {
  readonly polls = new Map<number, number[]>();
  private server = http.createServer((req, res) => {
    const match = /^\/agents\/(\d+)\/(status|messages)$/.exec(req.url ?? '');
    if (!match || req.method !== 'GET') return void res.writeHead(404).end();
    const agent = Number(match[1]);
    if (match[2] === 'status') {
      const times = this.polls.get(agent) ?? [];
      times.push(Date.now());
      this.polls.set(agent, times);
    }
    const body = JSON.stringify(match[2] === 'status' ? { status: 'stable', agent_type: 'claude' } : { messages: [] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Status requests per agent between `from` and `to`. */
  pollsBetween(from: number, to: number): number[] {
    return Array.from(
      { length: agents },
      (_, i) => (this.polls.get(i) ?? []).filter((t) => t >= from && t < to).length,
    );
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// The auto-pause pass is shared: R processes ask each agent about once an interval (not R times),
// and an idle task is auto-paused once.
describe.runIf(postgresServerUrl())(`auto-pause with ${processCount} processes and ${agents} agents`, () => {
  let database: TestDatabase;
  const processes: ServerProcess[] = [];
  const farm = new AgentFarm();

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    await farm.start();
    const env = {
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: String(intervalMs),
      HIATUS_AUTO_PAUSE_WARNING_SECONDS: '0',
    };
    processes.push(await startServerProcess(env));
    processes.push(...(await Promise.all([startServerProcess(env), startServerProcess(env)])));
  }, 180_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await farm.stop();
    await database?.drop();
  });

  it('asks each agent about once an interval, and auto-pauses an idle task once', async () => {
    const ids: string[] = [];
    for (let first = 0; first < agents; first += 100) {
      const created = await Promise.all(
        Array.from({ length: Math.min(100, agents - first) }, (_, k) =>
          apiClient(processes[(first + k) % processCount]!.url, adminToken).tasks.create.mutate({
            name: `agent-${first + k}`,
            prompt: 'p',
            agentUrl: `${farm.url}/agents/${first + k}`,
            // Agent 0's task sits idle past its timeout; the others never reach theirs.
            idleTimeoutSeconds: first + k === 0 ? 1 : 86_400,
          }),
        ),
      );
      ids.push(...created.map((c) => c.task.id));
    }
    const db = openDatabase(database.config);
    try {
      // Every task active: from then on, every agent is due once an interval.
      for (;;) {
        const active = await db.db
          .selectFrom('tasks')
          .innerJoin('workspace_builds as b', 'b.workspace_id', 'tasks.workspace_id')
          .where('b.transition', '=', 'start')
          .where('b.job_status', '=', 'succeeded')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .executeTakeFirstOrThrow();
        if (Number(active.n) >= agents) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      // Two intervals to settle, then four measured.
      await new Promise((resolve) => setTimeout(resolve, 2 * intervalMs));
      const from = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 4 * intervalMs));
      const polls = farm.pollsBetween(from, Date.now()).slice(1); // agent 0's task was paused
      const total = polls.reduce((a, b) => a + b, 0);
      const perInterval = total / (polls.length * 4);
      console.log(
        `${processCount} processes, ${polls.length} agents, interval ${intervalMs} ms: ${total} status requests in 4 intervals, ${perInterval.toFixed(3)} per agent per interval; per agent min ${Math.min(...polls)}, max ${Math.max(...polls)}`,
      );
      // Once an interval (an agent is due again an interval after its last look, found within a
      // quarter interval by one of the processes): 0.8 to 1.0 looks an interval, never R of them.
      expect(perInterval).toBeGreaterThan(0.75);
      expect(perInterval).toBeLessThanOrEqual(1.1);
      expect(Math.max(...polls)).toBeLessThanOrEqual(5);

      const autoPauses = await db.db
        .selectFrom('workspace_builds as b')
        .innerJoin('tasks', 'tasks.workspace_id', 'b.workspace_id')
        .where('b.reason', '=', 'task_auto_pause')
        .select(['tasks.id'])
        .execute();
      expect(autoPauses.map((b) => b.id)).toEqual([ids[0]]);
    } finally {
      await db.close();
    }
  }, 600_000);
});
