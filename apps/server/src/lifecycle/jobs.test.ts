import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { generateApiKey, keyDigest } from '../auth/keys.ts';
import { insertApiKey } from '../db/api-keys.ts';
import { releaseAcquiredJob } from '../db/jobs.ts';
import { waitForStatus } from '../inbox/send.ts';
import { listTaskBuilds } from './builds.ts';
import { acquireBuildJob, completeBuildJob, endStaleBuildJobs, heartbeatBuildJob } from './jobs.ts';
import { purgeDeletedTasks } from './purge.ts';
import { pushSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask } from './tasks.ts';

describe.each(testBackends())('build jobs on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });
  const newTask = () => createTask(h.app, h.alice, { name: `j-${Math.random()}`, prompt: '', agentUrl: h.agent.url });

  it('moves a task through initializing to active as its job runs and succeeds', async () => {
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, 'p1');
    expect(job).toMatchObject({ taskId: task.id, build: { jobStatus: 'running', transition: 'start' } });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('initializing');
    await heartbeatBuildJob(h.app, job!.build.id, 'p1');
    const done = await completeBuildJob(h.app, job!.build.id, { holder: 'p1' });
    expect(done).toMatchObject({ jobStatus: 'succeeded', error: null });
    expect(done.completedAt).toBeInstanceOf(Date);
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('records a failure with its error text, and the task is in error', async () => {
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, 'p1');
    await completeBuildJob(h.app, job!.build.id, { error: 'image pull failed' });
    expect((await getTask(h.app, h.alice, task.id)).latestBuild).toMatchObject({
      jobStatus: 'failed',
      error: 'image pull failed',
    });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('error');
  });

  it('refuses to complete or heartbeat a job that is not running, or is held by another provisioner', async () => {
    await newTask();
    const job = await acquireBuildJob(h.app, 'p1');
    await expect(completeBuildJob(h.app, job!.build.id, { holder: 'p2' })).rejects.toMatchObject({
      code: 'conflict',
    });
    await completeBuildJob(h.app, job!.build.id, { holder: 'p1' });
    await expect(completeBuildJob(h.app, job!.build.id)).rejects.toMatchObject({ code: 'conflict' });
    await expect(heartbeatBuildJob(h.app, job!.build.id)).rejects.toMatchObject({ code: 'conflict' });
  });

  it('gives a job to the key that acquired it: another key cannot heartbeat or complete it, whatever it calls itself', async () => {
    await h.settle();
    const provisionerKey = async () => {
      const { id, hash } = keyDigest(generateApiKey());
      return (await insertApiKey(h.db, { id, userId: h.alice.userId, secretHash: hash, scope: 'provisioner' })).id;
    };
    const [p1, p2] = [await provisionerKey(), await provisionerKey()];
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, { keyId: p1, name: 'gpu-1' });
    const row = () => h.db.selectFrom('workspace_builds').where('id', '=', job!.build.id).selectAll().execute();
    const before = await row();
    expect(before[0]).toMatchObject({ provisioner_id: 'gpu-1', provisioner_key_id: p1 });
    for (const holder of [
      { keyId: p2, name: 'gpu-1' },
      { keyId: p2, name: p1 },
      { keyId: null, name: 'gpu-1' },
      'gpu-1',
    ]) {
      await expect(heartbeatBuildJob(h.app, job!.build.id, holder)).rejects.toMatchObject({ code: 'conflict' });
      await expect(completeBuildJob(h.app, job!.build.id, { holder, error: 'stolen' })).rejects.toMatchObject({
        code: 'conflict',
        message: expect.stringContaining('held by this provisioner'),
      });
    }
    expect(await row()).toEqual(before);
    // The key is the identity: the name it gives is not asked.
    await heartbeatBuildJob(h.app, job!.build.id, { keyId: p1, name: 'renamed' });
    await completeBuildJob(h.app, job!.build.id, { holder: { keyId: p1, name: 'renamed' } });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('hands a job whose provisioner stopped sending heartbeats to the next, and fails it when its last holder went silent too', async () => {
    const { task } = await newTask();
    const silence = (buildId: string) =>
      h.db
        .updateTable('workspace_builds')
        .set({ heartbeat_at: new Date(Date.now() - 120_000) })
        .where('id', '=', buildId)
        .execute();
    const first = await acquireBuildJob(h.app, 'vanishing');
    expect(first).toMatchObject({ taskId: task.id, attempt: 1 });
    await silence(first!.build.id);
    expect(await endStaleBuildJobs(h.app, 60_000, 2)).toEqual({
      requeued: [expect.objectContaining({ id: first!.build.id, jobStatus: 'pending' })],
      failed: [],
    });
    // The task waits for its start again, no error; the silent holder's claim is over.
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('pending');
    await expect(heartbeatBuildJob(h.app, first!.build.id, 'vanishing')).rejects.toMatchObject({ code: 'conflict' });
    await expect(completeBuildJob(h.app, first!.build.id, { holder: 'vanishing' })).rejects.toMatchObject({
      code: 'conflict',
    });

    const second = await acquireBuildJob(h.app, 'vanishing-too');
    expect(second).toMatchObject({ build: { id: first!.build.id }, attempt: 2 });
    expect(await endStaleBuildJobs(h.app, 60_000, 2)).toEqual({ requeued: [], failed: [] }); // it beats in time
    await silence(first!.build.id);
    const ended = await endStaleBuildJobs(h.app, 60_000, 2);
    expect(ended.requeued).toEqual([]);
    expect(ended.failed.map((b) => b.id)).toEqual([first!.build.id]);
    expect((await getTask(h.app, h.alice, task.id)).latestBuild).toMatchObject({
      jobStatus: 'failed',
      error:
        'provisioner vanishing-too stopped sending heartbeats, and the job is not handed out again: 2 provisioners took it and each went silent',
    });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('error');
    expect(await endStaleBuildJobs(h.app, 60_000, 2)).toEqual({ requeued: [], failed: [] });
  });

  it('ends each stale job once when several processes look at the same time', async () => {
    await h.settle();
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, 'vanishing');
    await h.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 120_000) })
      .where('id', '=', job!.build.id)
      .execute();
    const all = await Promise.all([1, 2, 3, 4].map(() => endStaleBuildJobs(h.app, 60_000)));
    expect(all.flatMap((e) => e.requeued).map((b) => b.id)).toEqual([job!.build.id]);
    expect(all.flatMap((e) => e.failed)).toEqual([]);
    expect(await acquireBuildJob(h.app, 'next')).toMatchObject({ taskId: task.id, attempt: 2 });
  });

  it('does not hand out again a stale start that a later build replaced (a delete queued during it)', async () => {
    await h.settle();
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, 'vanishing');
    await deleteTask(h.app, h.alice, task.id);
    await h.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 120_000) })
      .where('id', '=', job!.build.id)
      .execute();
    const ended = await endStaleBuildJobs(h.app, 60_000);
    expect(ended.requeued).toEqual([]);
    expect(ended.failed).toEqual([
      expect.objectContaining({
        id: job!.build.id,
        error:
          'provisioner vanishing stopped sending heartbeats, and the job is not handed out again: a later build of its workspace replaced it',
      }),
    ]);
    // The delete is next: the start is not run again before it.
    expect(await acquireBuildJob(h.app, 'next')).toMatchObject({ taskId: task.id, build: { transition: 'delete' } });
  });

  it('fences a claim handed out again: the silent holder, even the same one, cannot act in its old attempt', async () => {
    await h.settle();
    const { task } = await newTask();
    const first = await acquireBuildJob(h.app, 'sleepy');
    await h.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 120_000) })
      .where('id', '=', first!.build.id)
      .execute();
    await endStaleBuildJobs(h.app, 60_000);
    // The same holder takes it again (a daemon that woke up): a new claim, attempt 2.
    const again = await acquireBuildJob(h.app, 'sleepy');
    expect(again).toMatchObject({ build: { id: first!.build.id }, attempt: 2 });
    const id = first!.build.id;
    await expect(heartbeatBuildJob(h.app, id, 'sleepy', 1)).rejects.toMatchObject({ code: 'conflict' });
    await expect(completeBuildJob(h.app, id, { holder: 'sleepy', attempt: 1 })).rejects.toMatchObject({
      code: 'conflict',
    });
    await heartbeatBuildJob(h.app, id, 'sleepy', 2);
    await completeBuildJob(h.app, id, { holder: 'sleepy', attempt: 2 });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('does not count a claim given back because its client left as an attempt', async () => {
    await h.settle();
    await newTask();
    const job = await acquireBuildJob(h.app, 'left');
    expect(await releaseAcquiredJob(h.db, job!.build.id, { keyId: null, name: 'left' })).toBeDefined();
    expect(await acquireBuildJob(h.app, 'next')).toMatchObject({ build: { id: job!.build.id }, attempt: 1 });
  });

  it('gives a provisioner only the jobs of the drivers and templates it announces', async () => {
    await h.settle();
    const { task } = await newTask();
    expect(await acquireBuildJob(h.app, 'docker-only', { drivers: ['command'] })).toBeNull();
    expect(await acquireBuildJob(h.app, 'one-template', { templates: ['gpu'] })).toBeNull();
    const job = await acquireBuildJob(h.app, 'externals', { drivers: ['external'] });
    expect(job).toMatchObject({ taskId: task.id, template: null, previousOutputs: null });
    expect(job!.task).toMatchObject({ id: task.id, prompt: '', parameters: {} });
    await completeBuildJob(h.app, job!.build.id, { holder: 'externals', outputs: { note: 'kept' } });
    const { items } = await listTaskBuilds(h.app, h.alice, task.id, {});
    expect(items[0]).toMatchObject({ jobStatus: 'succeeded', outputs: { note: 'kept' } });
  });

  it('waits for a job when asked to (a long poll), and is woken by a new one at once', async () => {
    await h.settle();
    const listening = h.app.events.listenerCount('build');
    // A limit no test reaches: only a job can end this wait.
    const waiting = acquireBuildJob(h.app, 'patient', { waitMs: 3_600_000 });
    // It looked, found no job, and listens for one.
    await vi.waitFor(() => expect(h.app.events.listenerCount('build')).toBe(listening + 1), { timeout: 30_000 });
    const { task } = await newTask();
    // The new job's event woke it (it stopped listening), not its next look a second later.
    expect(h.app.events.listenerCount('build')).toBe(listening);
    const job = await waiting;
    expect(job?.taskId).toBe(task.id);
    expect(await acquireBuildJob(h.app, 'patient', { waitMs: 300 })).toBeNull();
    await completeBuildJob(h.app, job!.build.id, { holder: 'patient' });
  });

  it('ends a long poll when its client leaves, and gives a client that has gone no job', async () => {
    await h.settle();
    const listening = h.app.events.listenerCount('build');
    const client = new AbortController();
    const waiting = acquireBuildJob(h.app, 'gone', { waitMs: 3_600_000, signal: client.signal });
    await vi.waitFor(() => expect(h.app.events.listenerCount('build')).toBe(listening + 1), { timeout: 30_000 });
    client.abort();
    const { task } = await newTask(); // queued after the client left: not for it
    expect(await waiting).toBeNull();
    expect(await acquireBuildJob(h.app, 'gone too', { signal: AbortSignal.abort() })).toBeNull();
    const job = await acquireBuildJob(h.app, 'alive');
    expect(job).toMatchObject({ taskId: task.id, build: { jobStatus: 'running' } });
    const holder = await h.db
      .selectFrom('workspace_builds')
      .select('provisioner_id')
      .where('id', '=', job!.build.id)
      .executeTakeFirstOrThrow();
    expect(holder.provisioner_id).toBe('alive');
    await completeBuildJob(h.app, job!.build.id, { holder: 'alive' });
  });

  it('gives back at once a job whose answer never reached its client, unless it heartbeated since', async () => {
    await h.settle();
    const { task } = await newTask();
    const client = new AbortController();
    const job = await acquireBuildJob(h.app, 'gone', { signal: client.signal });
    expect(job?.taskId).toBe(task.id);
    client.abort(); // the client left before its answer was written whole
    // Woken by the job coming back (a look a second later would come too, but within the same wait).
    const next = await acquireBuildJob(h.app, 'alive', { waitMs: 30_000 });
    expect(next?.build.id).toBe(job!.build.id);
    await expect(heartbeatBuildJob(h.app, job!.build.id, 'gone')).rejects.toMatchObject({ code: 'conflict' });
    await heartbeatBuildJob(h.app, job!.build.id, 'alive');
    // Its holder has given a sign of life: the job is its own, and is not taken back.
    expect(await releaseAcquiredJob(h.db, job!.build.id, { keyId: null, name: 'alive' })).toBeUndefined();
    await completeBuildJob(h.app, job!.build.id, { holder: 'alive' });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('makes a successful start’s agentUrl the task’s, and refuses one that is not a URL', async () => {
    await h.settle();
    const { task } = await newTask();
    const job = await acquireBuildJob(h.app, 'p');
    await expect(
      completeBuildJob(h.app, job!.build.id, { holder: 'p', outputs: { agentUrl: 'file:///etc' } }),
    ).rejects.toMatchObject({ code: 'bad_input' });
    await completeBuildJob(h.app, job!.build.id, { holder: 'p', outputs: { agentUrl: 'http://127.0.0.1:9/' } });
    expect((await getTask(h.app, h.alice, task.id)).agentUrl).toBe('http://127.0.0.1:9/');
  });

  it('has a built-in provisioner that completes new jobs at once', async () => {
    // Its next regular look an hour away: only the new job's event can start it within the test.
    const stop = h.provisioner(3_600_000);
    try {
      const { task } = await newTask();
      const active = await waitForStatus(h.app, task.id, 'active', 30_000);
      expect(active.latestBuild).toMatchObject({ jobStatus: 'succeeded', reason: 'initiator' });
    } finally {
      await stop();
    }
  });
});

describe.each(testBackends())('purging deleted tasks on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });
  it('removes old soft-deleted tasks with their workspace, builds and snapshot (by cascade)', async () => {
    {
      const { task } = await createTask(h.app, h.alice, { name: 'gone', prompt: '', agentUrl: 'http://127.0.0.1:9' });
      const { task: kept } = await createTask(h.app, h.alice, {
        name: 'kept',
        prompt: '',
        agentUrl: 'http://127.0.0.1:9',
      });
      await pushSnapshot(h.app, task.id, { messages: [] });
      // Soft-deleted two days ago by hand, leaving its snapshot behind as the upstream did: the cascade takes it.
      await h.db
        .updateTable('tasks')
        .set({ created_at: sql`NOW() - interval '3 days'`, deleted_at: sql`NOW() - interval '2 days'` })
        .where('id', '=', task.id)
        .execute();
      expect(await purgeDeletedTasks(h.app, 24 * 3600 * 1000)).toEqual([task.id]);
      const count = async (table: 'tasks' | 'workspaces' | 'workspace_builds' | 'task_snapshots') =>
        (await h.db.selectFrom(table).selectAll().execute()).length;
      expect(await count('tasks')).toBe(1);
      expect(await count('workspaces')).toBe(1);
      expect(await count('workspace_builds')).toBe(1);
      expect(await count('task_snapshots')).toBe(0);
      expect((await getTask(h.app, h.alice, kept.id)).status).toBe('pending');
    }
  });
});
