import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/connection.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { invariantViolations } from './invariants.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';
import { describeStorm, runStorm } from './storm.ts';

const adminToken = 'race-suite-admin-token-0123456789';
const servers = 3;
const agents = 6;
const tasksCount = 24;
const clients = 16;
const operations = 360;

// Three server processes on one PostgreSQL database, agents whose histories keep growing, and many
// clients firing pauses, resumes, auto-pauses (short idle timeouts) and deletes at the same tasks.
describe.runIf(postgresServerUrl())('race suite: three server processes, one database', () => {
  let database: TestDatabase;
  let processes: ServerProcess[] = [];
  const fakeAgents: FakeAgent[] = [];
  let growth: NodeJS.Timeout;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    if (database.config.kind !== 'postgres') throw new Error('unreachable');
    const env = {
      DATABASE_URL: database.config.url,
      DATABASE_POOL_SIZE: '8',
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '250',
      HIATUS_PROVISIONER_POLL_MS: '100',
      HIATUS_AGENT_TIMEOUT_MS: '2000',
      LOG_LEVEL: 'warn',
    };
    // All three start at once: they migrate and bootstrap the admin together.
    processes = await Promise.all(
      Array.from({ length: servers }, () => startServerProcess({ ...env, LOG_LEVEL: 'info' })),
    );
    for (let i = 0; i < agents; i++) fakeAgents.push((await new FakeAgent().start()).say(5, 200));
    growth = setInterval(() => {
      for (const agent of fakeAgents) agent.say(1, 300);
    }, 50);
  }, 120_000);

  afterAll(async () => {
    clearInterval(growth);
    await Promise.all(processes.map((p) => p.stop()));
    await Promise.all(fakeAgents.map((a) => a.stop()));
    await database?.drop();
  });

  it('keeps every invariant, and every success is in the database with its audit record', async () => {
    const admin = apiClient(processes[0]!.url, adminToken);
    const user = await admin.users.create.mutate({ username: 'racer' });
    const { key } = await admin.apiKeys.create.mutate({ userId: user.id });
    const apis = processes.map((p) => apiClient(p.url, key));
    const tasks = await Promise.all(
      Array.from({ length: tasksCount }, (_, i) =>
        apis[i % servers]!.tasks.create.mutate({
          name: `race-${i}`,
          prompt: 'race',
          agentUrl: fakeAgents[i % agents]!.url,
          // Half the tasks are auto-paused as soon as they sit idle for a second.
          ...(i % 2 === 0 ? { idleTimeoutSeconds: 1 } : {}),
        }),
      ),
    );
    const ids = tasks.map((t) => t.task.id);

    const storm = await runStorm({ apis, taskIds: ids, clients, operations, seed: 42 });
    const { successes, refusals } = storm;
    // Only the refusals the state machine explains: never an internal error.
    expect([...refusals.keys()].filter((code) => code !== 'CONFLICT')).toEqual([]);
    expect(storm.issued).toBe(operations);
    // Most operations collide with another on the same task; enough must go through to mean something.
    expect(successes.length).toBeGreaterThan(operations / 20);

    // Let the provisioners finish what was queued.
    const db = openDatabase(database.config);
    try {
      for (let i = 0; i < 100; i++) {
        const open = await db.db
          .selectFrom('workspace_builds')
          .where('job_status', 'in', ['pending', 'running'])
          .select('id')
          .execute();
        if (open.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await invariantViolations(db.db)).toEqual([]);
      const builds = await db.db.selectFrom('workspace_builds').select(['id', 'reason', 'job_status']).execute();
      const byId = new Map(builds.map((b) => [b.id, b]));
      for (const success of successes) expect(byId.has(success.buildId), `${success.op} ${success.buildId}`).toBe(true);
      expect(builds.filter((b) => b.job_status !== 'succeeded')).toEqual([]);
      // Auto-pauses happened alongside the clients', each once (the alternation check above).
      const autoPauses = builds.filter((b) => b.reason === 'task_auto_pause').length;
      process.stdout.write(`race suite: ${describeStorm(storm)}, ${autoPauses} auto-pauses, ${builds.length} builds\n`);
    } finally {
      await db.close();
    }
  });
});
