import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Db, openDatabase } from '../src/db/connection.ts';
import { defaults } from '../src/defaults.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

const adminToken = 'auto-pause-shared-admin-token-5e8a1c9d3b7f2046';
/** Enough agents that the processes' passes overlap (more per pass than a pass looks at once). */
const agents = 8 * defaults.autoPauseConcurrency;
const intervalMs = 2_000;
const processCount = 3;

/**
 * Many agents behind one loopback server: `/agents/<n>/status` and `/messages` answer as AgentAPI
 * does, and every status request is counted per agent.
 */
class AgentFarm {
  readonly polls = new Map<number, number>();
  private server = http.createServer((req, res) => {
    const match = /^\/agents\/(\d+)\/(status|messages)$/.exec(req.url ?? '');
    if (!match || req.method !== 'GET') return void res.writeHead(404).end();
    const agent = Number(match[1]);
    if (match[2] === 'status') this.polls.set(agent, (this.polls.get(agent) ?? 0) + 1);
    const body = JSON.stringify(match[2] === 'status' ? { status: 'stable', agent_type: 'claude' } : { messages: [] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Status requests so far, per agent. */
  pollCounts(): number[] {
    return Array.from({ length: agents }, (_, i) => this.polls.get(i) ?? 0);
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** PostgreSQL's clock, the one the processes' claims of due agents are timed by. */
async function databaseClock(db: Db): Promise<number> {
  const { rows } = await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(db);
  return rows[0]!.now.getTime();
}

// The auto-pause pass is shared: R processes ask each agent at most once an interval (not R times),
// and an idle task is auto-paused once. (How close to once an interval they come is a figure of
// the machine's speed: `pnpm bench:auto-pause` measures it with 2,000 agents.)
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
    // One migrates first; the others start on the current schema.
    processes.push(await startServerProcess(env));
    processes.push(...(await Promise.all([startServerProcess(env), startServerProcess(env)])));
  }, 180_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await farm.stop();
    await database?.drop();
  });

  it('asks each agent at most once an interval, and auto-pauses an idle task once', async () => {
    const { db, close } = openDatabase(database.config);
    try {
      // Every claim of an agent (and so every status request) comes after this.
      const start = await databaseClock(db);
      const ids: string[] = [];
      for (let first = 0; first < agents; first += 100) {
        const created = await Promise.all(
          Array.from({ length: Math.min(100, agents - first) }, (_, k) =>
            apiClient(processes[(first + k) % processCount]!.url, adminToken).tasks.create.mutate({
              name: `agent-${first + k}`,
              prompt: 'p',
              agentUrl: `${farm.url}/agents/${first + k}`,
              // The farm's agents only answer status requests, which this test counts: no prompt to deliver.
              sendPrompt: false,
              // Agent 0's task sits idle past its timeout; the others never reach theirs.
              idleTimeoutSeconds: first + k === 0 ? 1 : 86_400,
            }),
          ),
        );
        ids.push(...created.map((c) => c.task.id));
      }
      const admin = apiClient(processes[0]!.url, adminToken);

      // Several passes over every agent, whatever the machine's speed, and the idle task paused.
      let polls: number[] = [];
      await vi.waitFor(
        async () => {
          polls = farm.pollCounts();
          expect(Math.min(...polls.slice(1))).toBeGreaterThanOrEqual(3);
          expect((await admin.tasks.get.query({ id: ids[0]! })).status).toBe('paused');
        },
        { timeout: 180_000, interval: 200 },
      );
      const end = await databaseClock(db);

      // A claim moves the agent's next look an interval past the claim, in the database, for every
      // process: between `start` and `end` no agent can be claimed (so asked) more often than this,
      // however slow or fast the processes ran. R processes asking on their own would exceed it.
      const atMost = Math.floor((end - start) / intervalMs) + 1;
      console.log(
        `${processCount} processes, ${agents} agents, ${end - start} ms: status requests per agent ${Math.min(...polls)} to ${Math.max(...polls)}, at most ${atMost} allowed`,
      );
      expect(Math.max(...polls)).toBeLessThanOrEqual(atMost);

      const autoPauses = await db
        .selectFrom('workspace_builds as b')
        .innerJoin('tasks', 'tasks.workspace_id', 'b.workspace_id')
        .where('b.reason', '=', 'task_auto_pause')
        .select(['tasks.id'])
        .execute();
      expect(autoPauses.map((b) => b.id)).toEqual([ids[0]]);
    } finally {
      await close();
    }
  }, 300_000);
});
