import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { newMember, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import { createLogger } from '../logger.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { acquireBuildJob, completeBuildJob, failStaleBuildJobs, heartbeatBuildJob } from './jobs.ts';
import { startBuiltinProvisioner } from './provisioner.ts';
import { purgeDeletedTasks } from './purge.ts';
import { waitForStatus } from './send.ts';
import { pushSnapshot } from './snapshots.ts';
import { createTask, getTask } from './tasks.ts';

describe.each(testBackends())('build jobs on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    lc = testLifecycle(database.db);
    alice = await newMember(database.db);
    agent = await new FakeAgent().start();
  });
  afterAll(async () => {
    await agent.stop();
    await database.drop();
  });
  const newTask = () => createTask(lc, alice, { name: `j-${Math.random()}`, prompt: '', agentUrl: agent.url });

  it('moves a task through initializing to active as its job runs and succeeds', async () => {
    const { task } = await newTask();
    const job = await acquireBuildJob(lc, 'p1');
    expect(job).toMatchObject({ taskId: task.id, build: { jobStatus: 'running', transition: 'start' } });
    expect((await getTask(lc, alice, task.id)).status).toBe('initializing');
    await heartbeatBuildJob(lc, job!.build.id, 'p1');
    const done = await completeBuildJob(lc, job!.build.id, { provisionerId: 'p1' });
    expect(done).toMatchObject({ jobStatus: 'succeeded', error: null });
    expect(done.completedAt).toBeInstanceOf(Date);
    expect((await getTask(lc, alice, task.id)).status).toBe('active');
  });

  it('records a failure with its error text, and the task is in error', async () => {
    const { task } = await newTask();
    const job = await acquireBuildJob(lc, 'p1');
    await completeBuildJob(lc, job!.build.id, { error: 'image pull failed' });
    expect((await getTask(lc, alice, task.id)).latestBuild).toMatchObject({
      jobStatus: 'failed',
      error: 'image pull failed',
    });
    expect((await getTask(lc, alice, task.id)).status).toBe('error');
  });

  it('refuses to complete or heartbeat a job that is not running, or is held by another provisioner', async () => {
    await newTask();
    const job = await acquireBuildJob(lc, 'p1');
    await expect(completeBuildJob(lc, job!.build.id, { provisionerId: 'p2' })).rejects.toMatchObject({
      code: 'conflict',
    });
    await completeBuildJob(lc, job!.build.id, { provisionerId: 'p1' });
    await expect(completeBuildJob(lc, job!.build.id)).rejects.toMatchObject({ code: 'conflict' });
    await expect(heartbeatBuildJob(lc, job!.build.id)).rejects.toMatchObject({ code: 'conflict' });
  });

  it('fails a job whose provisioner stopped sending heartbeats', async () => {
    const { task } = await newTask();
    const job = await acquireBuildJob(lc, 'vanishing');
    await database.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 120_000) })
      .where('id', '=', job!.build.id)
      .execute();
    const failed = await failStaleBuildJobs(lc, 60_000);
    expect(failed.map((b) => b.id)).toEqual([job!.build.id]);
    expect((await getTask(lc, alice, task.id)).latestBuild).toMatchObject({
      jobStatus: 'failed',
      error: 'provisioner vanishing stopped sending heartbeats',
    });
    expect(await failStaleBuildJobs(lc, 60_000)).toEqual([]);
  });

  it('has a built-in provisioner that completes new jobs at once', async () => {
    const stop = startBuiltinProvisioner(lc, {
      pollIntervalMs: 10_000,
      staleAfterMs: 60_000,
      log: createLogger('silent'),
    });
    try {
      const { task } = await newTask();
      const active = await waitForStatus(lc, task.id, 'active', 5_000);
      expect(active.latestBuild).toMatchObject({ jobStatus: 'succeeded', reason: 'initiator' });
    } finally {
      await stop();
    }
  });
});

describe.each(testBackends())('purging deleted tasks on %s', (backend) => {
  it('removes old soft-deleted tasks with their workspace, builds and snapshot (by cascade)', async () => {
    const database = await createMigratedDatabase(backend);
    try {
      const lc = testLifecycle(database.db);
      const alice = await newMember(database.db);
      const { task } = await createTask(lc, alice, { name: 'gone', prompt: '', agentUrl: 'http://127.0.0.1:9' });
      const { task: kept } = await createTask(lc, alice, { name: 'kept', prompt: '', agentUrl: 'http://127.0.0.1:9' });
      await pushSnapshot(lc, task.id, { messages: [] });
      // Soft-deleted two days ago by hand, leaving its snapshot behind as the upstream did: the cascade takes it.
      await database.db
        .updateTable('tasks')
        .set({ created_at: sql`NOW() - interval '3 days'`, deleted_at: sql`NOW() - interval '2 days'` })
        .where('id', '=', task.id)
        .execute();
      expect(await purgeDeletedTasks(lc, 24 * 3600 * 1000)).toEqual([task.id]);
      const count = async (table: 'tasks' | 'workspaces' | 'workspace_builds' | 'task_snapshots') =>
        (await database.db.selectFrom(table).selectAll().execute()).length;
      expect(await count('tasks')).toBe(1);
      expect(await count('workspaces')).toBe(1);
      expect(await count('workspace_builds')).toBe(1);
      expect(await count('task_snapshots')).toBe(0);
      expect((await getTask(lc, alice, kept.id)).status).toBe('pending');
    } finally {
      await database.drop();
    }
  });
});
