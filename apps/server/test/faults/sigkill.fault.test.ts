import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../../src/db/connection.ts';
import { apiClient } from '../api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from '../databases.ts';
import { FakeAgent } from '../fake-agent.ts';
import { invariantViolations } from '../invariants.ts';
import { type ServerProcess, startServerProcess } from '../server-process.ts';
import { describeStorm, runDuels, runStorm, seedStormTasks, tearDownStorm, waitForJobsToSettle } from '../storm.ts';

const adminToken = 'sigkill-admin-token-0123456789abcdef';

// A server process killed without warning in the middle of a pause storm, then started again.
describe.runIf(postgresServerUrl())('a server killed with SIGKILL mid-storm', () => {
  let database: TestDatabase;
  let env: Record<string, string>;
  const processes: ServerProcess[] = [];
  const agents: FakeAgent[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    env = {
      ...databaseEnv(database),
      DATABASE_POOL_SIZE: '6',
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_PROVISIONER_POLL_MS: '100',
      // A job held by the killed process is handed out again soon, not left running.
      HIATUS_PROVISIONER_STALE_MS: '1500',
    };
    processes.push(...(await Promise.all([1, 2, 3].map(() => startServerProcess(env)))));
    for (let i = 0; i < 4; i++) agents.push((await new FakeAgent().start()).say(20, 2000));
  }, 120_000);

  afterAll(async () => {
    await tearDownStorm(processes, agents, database);
  });

  it('keeps the invariants, and every success the clients saw is in the database', async () => {
    const { key, taskIds: ids } = await seedStormTasks({
      urls: processes.map((p) => p.url),
      adminToken,
      agents,
      count: 20,
      username: 'storm',
    });
    const apis = processes.map((p) => apiClient(p.url, key));
    const victim = processes[1]!;

    const { db, close } = openDatabase(database.config);
    const buildCount = async () => (await db.selectFrom('workspace_builds').select('id').execute()).length;
    const before = await buildCount();
    const storm = runStorm({
      apis,
      taskIds: ids.slice(0, 16),
      clients: 16,
      operations: 400,
      seed: 7,
      maxDeletes: 0,
      timeoutMs: 60_000,
    });
    // Killed mid-storm: once the storm's changes are landing (pause and resume builds committed).
    await vi.waitFor(async () => expect(await buildCount()).toBeGreaterThanOrEqual(before + 16), {
      timeout: 60_000,
      interval: 50,
    });
    await victim.kill();
    const replacement = await startServerProcess(env);
    processes.push(replacement);
    // Clients that used the dead server now reach the new one.
    apis[1] = apiClient(replacement.url, key);
    const result = await storm;
    process.stdout.write(`sigkill storm: ${describeStorm(result)}\n`);
    // Refusals are conflicts, or transport errors from the killed server: nothing else.
    for (const code of result.refusals.keys()) expect(code).toMatch(/^CONFLICT$|^transport: /);
    // The survivors and the replacement serve: races on untouched tasks each have exactly one winner.
    const duels = await runDuels({ apis, taskIds: ids.slice(16), contenders: 6, rounds: 1 });
    expect(duels.winnersPerRace).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect([...duels.refusals.keys()]).toEqual(['CONFLICT']);

    try {
      // Running jobs of the dead process are handed out again once stale (to a survivor); everything completes.
      await waitForJobsToSettle(db);
      const builds = await db.selectFrom('workspace_builds').select(['id', 'job_status', 'error']).execute();
      expect(builds.filter((b) => b.job_status === 'pending' || b.job_status === 'running')).toEqual([]);
      const stored = new Set(builds.map((b) => b.id));
      const lost = [...result.successes, ...duels.successes].filter((s) => !stored.has(s.buildId));
      expect(lost).toEqual([]);
      expect(await invariantViolations(db)).toEqual([]);
    } finally {
      await close();
    }
  });
});
