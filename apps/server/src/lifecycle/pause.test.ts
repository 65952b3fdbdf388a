import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { activeTask, databaseState, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError } from './errors.ts';
import { pauseTask } from './pause.ts';
import { resumeTask } from './resume.ts';
import { getSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask } from './tasks.ts';

describe.each(testBackends())('pause and resume on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    lc = testLifecycle(database.db, { agentTimeoutMs: 300, maxSnapshotBytes: 256 * 1024 });
    alice = await newMember(database.db);
  });
  afterAll(() => database.drop());
  beforeEach(async () => {
    agent = await new FakeAgent().start();
    return () => agent.stop();
  });

  const manual = { reason: 'task_manual_pause' } as const;

  it('walks active → pausing → paused → resumed → active, with a build and reason for each step', async () => {
    agent.say(5);
    const task = await activeTask(lc, alice, agent);
    expect(task.status).toBe('pending');
    expect((await getTask(lc, alice, task.id)).status).toBe('active');

    const paused = await pauseTask(lc, alice, task.id, manual);
    expect(paused.task.status).toBe('pausing');
    expect(paused.build).toMatchObject({
      transition: 'stop',
      reason: 'task_manual_pause',
      buildNumber: 2,
      jobStatus: 'pending',
    });
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 5 });
    await settle(lc);
    expect((await getTask(lc, alice, task.id)).status).toBe('paused');

    const resumed = await resumeTask(lc, alice, task.id);
    expect(resumed.build).toMatchObject({ transition: 'start', reason: 'task_resume', buildNumber: 3 });
    expect(resumed.task.status).toBe('pending');
    // The snapshot stays readable until the next pause.
    expect((await getSnapshot(lc, alice, task.id)).messageCount).toBe(5);
    await settle(lc);
    expect((await getTask(lc, alice, task.id)).status).toBe('active');
  });

  it('keeps the whole history, not the last few messages, in the upstream envelope', async () => {
    agent.say(100, 2000); // ~200 KB: past the upstream's 10 messages and 64 KB
    const task = await activeTask(lc, alice, agent);
    const { snapshot } = await pauseTask(lc, alice, task.id, manual);
    expect(snapshot).toMatchObject({ taken: true, messageCount: 100 });
    const stored = await database.db
      .selectFrom('task_snapshots')
      .where('task_id', '=', task.id)
      .select('log_snapshot')
      .executeTakeFirstOrThrow();
    expect(stored.log_snapshot).toEqual({ format: 'agentapi', data: { messages: agent.messages } });
  });

  it('overwrites the snapshot on the second pause', async () => {
    agent.say(2);
    const task = await activeTask(lc, alice, agent);
    const first = await pauseTask(lc, alice, task.id, manual);
    await settle(lc);
    await resumeTask(lc, alice, task.id);
    await settle(lc);
    agent.say(3);
    const second = await pauseTask(lc, alice, task.id, manual);
    expect(second.snapshot).toMatchObject({ taken: true, messageCount: 5 });
    const snapshot = await getSnapshot(lc, alice, task.id);
    expect(snapshot.messages).toEqual(agent.messages);
    expect(snapshot.createdAt.getTime()).toBeGreaterThan(first.snapshot.taken ? first.snapshot.createdAt.getTime() : 0);
    const rows = await database.db.selectFrom('task_snapshots').where('task_id', '=', task.id).selectAll().execute();
    expect(rows).toHaveLength(1);
  });

  it.each(['pending', 'pausing', 'paused'])('refuses to pause a %s task, naming its status', async (status) => {
    const { task } = await createTask(lc, alice, {
      name: `t-${status}-${Math.random()}`,
      prompt: '',
      agentUrl: agent.url,
    });
    if (status !== 'pending') {
      await settle(lc);
      await pauseTask(lc, alice, task.id, manual);
      if (status === 'paused') await settle(lc);
    }
    const before = await databaseState(database.db);
    const attempt = pauseTask(lc, alice, task.id, manual);
    await expect(attempt).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining(`it is ${status}`),
    });
    expect(await databaseState(database.db)).toEqual(before);
  });

  it.each(['pending', 'active'])('refuses to resume a %s task', async (status) => {
    const { task } = await createTask(lc, alice, {
      name: `r-${status}-${Math.random()}`,
      prompt: '',
      agentUrl: agent.url,
    });
    if (status === 'active') await settle(lc);
    await expect(resumeTask(lc, alice, task.id)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining(`it is ${status}`),
    });
  });

  it('resumes after a failed stop, but not after a failed start', async () => {
    const task = await activeTask(lc, alice, agent);
    await pauseTask(lc, alice, task.id, manual);
    await settle(lc, { error: 'the cloud said no' });
    expect((await getTask(lc, alice, task.id)).status).toBe('error');
    await resumeTask(lc, alice, task.id);
    await settle(lc, { error: 'out of capacity' });
    await expect(resumeTask(lc, alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
  });

  describe.each([
    ['down', 'down', 'agent_unreachable'],
    ['slow', 'hang', 'agent_unreachable'],
    ['answering 500', 'error500', 'agent_unreachable'],
    ['answering garbage', 'garbage', 'agent_bad_response'],
    ['answering the wrong shape', 'wrong-shape', 'agent_bad_response'],
    ['closing half way', 'close-midway', 'agent_unreachable'],
    ['answering too much', 'huge', 'too_large'],
  ] as const)('an agent %s', (_what, fault, code) => {
    const breakAgent = async () => {
      if (fault === 'down') await agent.stop();
      else agent.mode = fault;
    };
    it('fails a manual pause with a clear error and changes nothing', async () => {
      agent.say(3);
      const task = await activeTask(lc, alice, agent);
      await pauseTask(lc, alice, task.id, manual);
      await settle(lc);
      await resumeTask(lc, alice, task.id);
      await settle(lc);
      await breakAgent();
      const before = await databaseState(database.db);
      const attempt = pauseTask(lc, alice, task.id, manual);
      await expect(attempt).rejects.toBeInstanceOf(LifecycleError);
      await expect(attempt).rejects.toMatchObject({ code });
      expect(await databaseState(database.db)).toEqual(before);
    });

    it('lets a pause without a fresh snapshot, and an auto-pause, go ahead keeping the old snapshot', async () => {
      agent.say(3);
      const task = await activeTask(lc, alice, agent);
      await pauseTask(lc, alice, task.id, manual);
      await settle(lc);
      const old = await getSnapshot(lc, alice, task.id);
      await resumeTask(lc, alice, task.id);
      await settle(lc);
      await breakAgent();

      const forced = await pauseTask(lc, alice, task.id, { ...manual, withoutSnapshot: true });
      expect(forced.snapshot).toMatchObject({ taken: false, reason: expect.stringContaining('no fresh snapshot') });
      expect(await getSnapshot(lc, alice, task.id)).toEqual(old);
      await settle(lc);
      await resumeTask(lc, alice, task.id);
      await settle(lc);

      const auto = await pauseTask(lc, { kind: 'system' }, task.id, { reason: 'task_auto_pause' });
      expect(auto.build).toMatchObject({ reason: 'task_auto_pause', initiatorId: null });
      expect(auto.snapshot.taken).toBe(false);
      expect(await getSnapshot(lc, alice, task.id)).toEqual(old);
    });
  });

  it('refuses a history PostgreSQL could not store (NUL, lone surrogates) as garbage, changing nothing', async () => {
    agent.say(2);
    const task = await activeTask(lc, alice, agent);
    agent.messages.push({ id: 2, role: 'agent', content: 'tab\u0000null and \ud800', time: new Date().toISOString() });
    const before = await databaseState(database.db);
    await expect(pauseTask(lc, alice, task.id, manual)).rejects.toMatchObject({ code: 'agent_bad_response' });
    expect(await databaseState(database.db)).toEqual(before);
  });

  it('hides another member’s task as not found', async () => {
    const bob = await newMember(database.db);
    const task = await activeTask(lc, alice, agent);
    await expect(pauseTask(lc, bob, task.id, manual)).rejects.toMatchObject({ code: 'not_found' });
    await expect(resumeTask(lc, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    await expect(deleteTask(lc, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    const admin = await newMember(database.db, 'admin');
    expect((await getTask(lc, admin, task.id)).id).toBe(task.id);
  });

  it('deletes the snapshot with a soft delete, and refuses to touch the task after', async () => {
    agent.say(2);
    const task = await activeTask(lc, alice, agent);
    await pauseTask(lc, alice, task.id, manual);
    const { task: deleted, build } = await deleteTask(lc, alice, task.id);
    expect(deleted.status).toBe('deleted');
    expect(build).toMatchObject({ transition: 'delete', reason: 'initiator' });
    const snapshots = await database.db
      .selectFrom('task_snapshots')
      .where('task_id', '=', task.id)
      .selectAll()
      .execute();
    expect(snapshots).toEqual([]);
    await expect(deleteTask(lc, alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
    await expect(resumeTask(lc, alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
  });
});
