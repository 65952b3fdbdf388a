import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/connection.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { invariantViolations } from './invariants.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';
import { describeStorm, runDuels, runStorm, seedStormTasks, tearDownStorm, waitForJobsToSettle } from './storm.ts';

const adminToken = 'race-suite-admin-token-0123456789';
const servers = 3;
const agents = 6;
const tasksCount = 24;
const clients = 16;
const operations = 360;
const duelTasks = 6;
const rounds = 2;

// Three server processes on one PostgreSQL database, agents whose histories keep growing, and many
// clients firing pauses, resumes, auto-pauses (short idle timeouts) and deletes at the same tasks.
describe.runIf(postgresServerUrl())('race suite: three server processes, one database', () => {
  let database: TestDatabase;
  let processes: ServerProcess[] = [];
  const fakeAgents: FakeAgent[] = [];
  let growth: NodeJS.Timeout;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    const env = {
      ...databaseEnv(database),
      DATABASE_POOL_SIZE: '8',
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '250',
      HIATUS_PROVISIONER_POLL_MS: '100',
      // The fake agents answer from this busy test process: a pause must never fail for a slow answer.
      HIATUS_AGENT_TIMEOUT_MS: '30000',
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
    await tearDownStorm(processes, fakeAgents, database);
  });

  it('keeps every invariant, and every success is in the database with its audit record', async () => {
    const { key, taskIds: ids } = await seedStormTasks({
      urls: processes.map((p) => p.url),
      adminToken,
      agents: fakeAgents,
      count: tasksCount + duelTasks,
      username: 'racer',
      // Half the tasks are auto-paused as soon as they sit idle for a second.
      // (The duel tasks, the last ones, keep the long default: nothing but their duels touches them.)
      extra: (i) => (i % 2 === 0 && i < tasksCount ? { idleTimeoutSeconds: 1 } : {}),
    });
    const apis = processes.map((p) => apiClient(p.url, key));

    // How many storm operations win depends on timing, and is not asserted; that each winner is
    // stored, with the build its operation makes, is. Beside it, duels whose outcome is certain:
    // exactly one winner per race.
    const [storm, duels] = await Promise.all([
      runStorm({ apis, taskIds: ids.slice(0, tasksCount), clients, operations, seed: 42 }),
      runDuels({ apis, taskIds: ids.slice(tasksCount), contenders: 6, rounds }),
    ]);
    const successes = [...storm.successes, ...duels.successes];
    process.stdout.write(`race suite storm: ${describeStorm(storm)}\n`);
    // Only the refusals the state machine explains: never an internal error.
    expect([...storm.refusals.keys(), ...duels.refusals.keys()].filter((code) => code !== 'CONFLICT')).toEqual([]);
    expect(duels.winnersPerRace).toEqual(Array(duelTasks * rounds * 2).fill(1));
    // Every acknowledged operation made a build of its own.
    expect(new Set(successes.map((s) => s.buildId)).size).toBe(successes.length);

    // Let the provisioners finish what was queued.
    const db = openDatabase(database.config);
    try {
      await waitForJobsToSettle(db.db);
      // Among them: each task's transitions alternate (a pause never follows a pause), each build
      // has exactly one audit record, nothing follows a delete.
      expect(await invariantViolations(db.db)).toEqual([]);
      const builds = await db.db
        .selectFrom('workspace_builds')
        .innerJoin('tasks', 'tasks.workspace_id', 'workspace_builds.workspace_id')
        .select(['workspace_builds.id', 'tasks.id as taskId', 'reason', 'transition', 'job_status'])
        .execute();
      const byId = new Map(builds.map((b) => [b.id, b]));
      const made = { pause: 'stop', resume: 'start', delete: 'delete' } as const;
      for (const success of successes) {
        expect(byId.get(success.buildId), `${success.op} ${success.buildId}`).toMatchObject({
          taskId: success.taskId,
          transition: made[success.op],
        });
      }
      expect(builds.filter((b) => b.job_status !== 'succeeded')).toEqual([]);
      // The builds nobody acknowledged are the creates and the auto-pauses, which ran alongside.
      const acknowledged = new Set(successes.map((s) => s.buildId));
      const others = builds.filter((b) => !acknowledged.has(b.id));
      expect(others.filter((b) => b.reason !== 'initiator' && b.reason !== 'task_auto_pause')).toEqual([]);
      expect(others.filter((b) => b.reason === 'initiator')).toHaveLength(tasksCount + duelTasks);
      const autoPauses = others.filter((b) => b.reason === 'task_auto_pause').length;
      process.stdout.write(`race suite: ${describeStorm(storm)}, ${autoPauses} auto-pauses, ${builds.length} builds\n`);
    } finally {
      await db.close();
    }
  }, 300_000);
});
