import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { HiatusError } from '../domain/errors.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { getSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask } from './tasks.ts';

describe.each(testBackends())('pause and resume on %s', (backend) => {
  // A slow agent is given up on after 2 s: long enough for a healthy one on a loaded machine.
  const h = useHarness(backend, { agentTimeoutMs: 2_000, maxSnapshotBytes: 256 * 1024 });

  const manual = { reason: 'task_manual_pause' } as const;

  it('walks active → pausing → paused → resumed → active, with a build and reason for each step', async () => {
    h.agent.say(5);
    const task = await h.task();
    expect(task.status).toBe('active');

    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    expect(paused.task.status).toBe('pausing');
    expect(paused.build).toMatchObject({
      transition: 'stop',
      reason: 'task_manual_pause',
      buildNumber: 2,
      jobStatus: 'pending',
    });
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 5 });
    await h.settle();
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('paused');

    const resumed = await meteredResume(h.app, h.alice, task.id);
    expect(resumed.build).toMatchObject({ transition: 'start', reason: 'task_resume', buildNumber: 3 });
    expect(resumed.task.status).toBe('pending');
    // The snapshot stays readable until the next pause.
    expect((await getSnapshot(h.app, h.alice, task.id)).messageCount).toBe(5);
    await h.settle();
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('keeps the whole history, not the last few messages, in the upstream envelope', async () => {
    h.agent.say(100, 2000); // ~200 KB: past the upstream's 10 messages and 64 KB
    const task = await h.task();
    const { snapshot } = await meteredPause(h.app, h.alice, task.id, manual);
    expect(snapshot).toMatchObject({ taken: true, messageCount: 100 });
    const stored = await h.db
      .selectFrom('task_snapshots')
      .where('task_id', '=', task.id)
      .select('log_snapshot')
      .executeTakeFirstOrThrow();
    expect(stored.log_snapshot).toEqual({ format: 'agentapi', data: { messages: h.agent.messages } });
  });

  it('overwrites the snapshot on the second pause', async () => {
    h.agent.say(2);
    const task = await h.task();
    const first = await meteredPause(h.app, h.alice, task.id, manual);
    await h.settle();
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    h.agent.say(3);
    const second = await meteredPause(h.app, h.alice, task.id, manual);
    expect(second.snapshot).toMatchObject({ taken: true, messageCount: 5 });
    const snapshot = await getSnapshot(h.app, h.alice, task.id);
    expect(snapshot.messages).toEqual(h.agent.messages);
    expect(snapshot.createdAt.getTime()).toBeGreaterThan(first.snapshot.taken ? first.snapshot.createdAt.getTime() : 0);
    const rows = await h.db.selectFrom('task_snapshots').where('task_id', '=', task.id).selectAll().execute();
    expect(rows).toHaveLength(1);
  });

  it.each(['pending', 'pausing', 'paused'])('refuses to pause a %s task, naming its status', async (status) => {
    const { task } = await createTask(h.app, h.alice, {
      name: `t-${status}-${Math.random()}`,
      prompt: '',
      agentUrl: h.agent.url,
    });
    if (status !== 'pending') {
      await h.settle();
      await meteredPause(h.app, h.alice, task.id, manual);
      if (status === 'paused') await h.settle();
    }
    const before = await h.state();
    const attempt = meteredPause(h.app, h.alice, task.id, manual);
    await expect(attempt).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining(`it is ${status}`),
    });
    expect(await h.state()).toEqual(before);
  });

  it.each(['pending', 'active'])('refuses to resume a %s task', async (status) => {
    const { task } = await createTask(h.app, h.alice, {
      name: `r-${status}-${Math.random()}`,
      prompt: '',
      agentUrl: h.agent.url,
    });
    if (status === 'active') await h.settle();
    await expect(meteredResume(h.app, h.alice, task.id)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining(`it is ${status}`),
    });
  });

  it('resumes after a failed stop, but not after a failed start', async () => {
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, manual);
    await h.settle({ error: 'the cloud said no' });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('error');
    await meteredResume(h.app, h.alice, task.id);
    await h.settle({ error: 'out of capacity' });
    await expect(meteredResume(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
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
      if (fault === 'down') await h.agent.stop();
      else h.agent.mode = fault;
    };
    it('fails a manual pause with a clear error and changes nothing', async () => {
      h.agent.say(3);
      const task = await h.task();
      await meteredPause(h.app, h.alice, task.id, manual);
      await h.settle();
      await meteredResume(h.app, h.alice, task.id);
      await h.settle();
      await breakAgent();
      const before = await h.state();
      const attempt = meteredPause(h.app, h.alice, task.id, manual);
      await expect(attempt).rejects.toBeInstanceOf(HiatusError);
      await expect(attempt).rejects.toMatchObject({ code });
      expect(await h.state()).toEqual(before);
    });

    it('lets a pause without a fresh snapshot, and an auto-pause, go ahead keeping the old snapshot', async () => {
      h.agent.say(3);
      const task = await h.task();
      await meteredPause(h.app, h.alice, task.id, manual);
      await h.settle();
      const old = await getSnapshot(h.app, h.alice, task.id);
      await meteredResume(h.app, h.alice, task.id);
      await h.settle();
      await breakAgent();

      const forced = await meteredPause(h.app, h.alice, task.id, { ...manual, withoutSnapshot: true });
      expect(forced.snapshot).toMatchObject({ taken: false, reason: expect.stringContaining('no fresh snapshot') });
      expect(await getSnapshot(h.app, h.alice, task.id)).toEqual(old);
      await h.settle();
      await meteredResume(h.app, h.alice, task.id);
      await h.settle();

      const auto = await meteredPause(h.app, { kind: 'system' }, task.id, { reason: 'task_auto_pause' });
      expect(auto.build).toMatchObject({ reason: 'task_auto_pause', initiatorId: null });
      expect(auto.snapshot.taken).toBe(false);
      expect(await getSnapshot(h.app, h.alice, task.id)).toEqual(old);
    });
  });

  it('refuses a history PostgreSQL could not store (NUL, lone surrogates) as garbage, changing nothing', async () => {
    h.agent.say(2);
    const task = await h.task();
    h.agent.messages.push({
      id: 2,
      role: 'agent',
      content: 'tab\u0000null and \ud800',
      time: new Date().toISOString(),
    });
    const before = await h.state();
    await expect(meteredPause(h.app, h.alice, task.id, manual)).rejects.toMatchObject({ code: 'agent_bad_response' });
    expect(await h.state()).toEqual(before);
  });

  it('hides another member’s task as not found', async () => {
    const bob = await h.member();
    const task = await h.task();
    await expect(meteredPause(h.app, bob, task.id, manual)).rejects.toMatchObject({ code: 'not_found' });
    await expect(meteredResume(h.app, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    await expect(deleteTask(h.app, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    const admin = await h.member('admin');
    expect((await getTask(h.app, admin, task.id)).id).toBe(task.id);
  });

  it('deletes the snapshot with a soft delete, and refuses to touch the task after', async () => {
    h.agent.say(2);
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, manual);
    const { task: deleted, build } = await deleteTask(h.app, h.alice, task.id);
    expect(deleted.status).toBe('deleted');
    expect(build).toMatchObject({ transition: 'delete', reason: 'initiator' });
    const snapshots = await h.db.selectFrom('task_snapshots').where('task_id', '=', task.id).selectAll().execute();
    expect(snapshots).toEqual([]);
    await expect(deleteTask(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
    await expect(meteredResume(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
  });
});
