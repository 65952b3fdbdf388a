import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { listAuditLogs } from '../db/audit.ts';
import { listEvents } from '../db/events.ts';
import { defaults } from '../defaults.ts';
import { sendToTask } from '../inbox/send.ts';
import { autoPausePass } from './auto-pause.ts';
import { keepTaskAlive } from './keep-alive.ts';
import { readLogs } from './logs.ts';
import { getTask, listTasksFor } from './tasks.ts';

describe.each(testBackends())('activity and keep-alive on %s', (backend) => {
  // A default so long that only tasks with their own short timeout are ever idle enough.
  const h = useHarness(backend, { defaultIdleTimeoutSeconds: 3600, autoPauseWarningSeconds: 0 }, { say: 2 });

  const pausedBy = async (taskId: string) => (await autoPausePass(h.app)).paused.includes(taskId);
  /** When the task's latest keep-alive committed: its event's time, the database's clock in that transaction. */
  const keptAt = async (taskId: string) =>
    (await listEvents(h.db, { taskId, types: ['task.keep_alive'], limit: 100 })).at(-1)!.occurredAt;

  it('postpones an auto-pause while the keep-alive holds', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 61);
    const kept = await keepTaskAlive(h.app, h.alice, task.id, 600);
    // 600 s from the keep-alive's commit, as its event (written in the same transaction) dates it.
    expect(kept.keepAliveUntil.getTime() - (await keptAt(task.id)).getTime()).toBe(600_000);
    expect(kept.task.keepAliveUntil).toEqual(kept.keepAliveUntil);
    // However long the agent has looked idle, the pass leaves it alone until the keep-alive ends.
    await h.idleFor(task.id, 6_000);
    expect(await pausedBy(task.id)).toBe(false);
    expect(await pausedBy(task.id)).toBe(false);
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('does not postpone an auto-pause once the keep-alive has run out', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await keepTaskAlive(h.app, h.alice, task.id, 600);
    await h.db
      .updateTable('tasks')
      .set({ keep_alive_until: new Date(Date.now() - 1_000) })
      .where('id', '=', task.id)
      .execute();
    await h.idleFor(task.id, 61);
    expect(await pausedBy(task.id)).toBe(true);
    expect((await getTask(h.app, h.alice, task.id)).latestBuild).toMatchObject({ reason: 'task_auto_pause' });
  });

  it('starts the idle clock afresh when the keep-alive runs out, not from before it', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 6_000);
    await keepTaskAlive(h.app, h.alice, task.id, 1);
    await h.db
      .updateTable('tasks')
      .set({ keep_alive_until: new Date(Date.now() - 1_000) })
      .where('id', '=', task.id)
      .execute();
    // The keep-alive reset the clock: the first pass after it starts counting from now.
    expect(await pausedBy(task.id)).toBe(false);
  });

  it('is audited and announced, bounded, and never wakes a paused task', async () => {
    const task = await h.task();
    await keepTaskAlive(h.app, h.alice, task.id);
    const row = await h.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect(row.keep_alive_until!.getTime() - (await keptAt(task.id)).getTime()).toBe(defaults.keepAliveSeconds * 1000);
    const audits = (await listAuditLogs(h.db, { resourceId: task.id, limit: 100 })).items;
    expect(audits.filter((a) => a.action === 'task.keep_alive')).toHaveLength(1);
    const events = await listEvents(h.db, { taskId: task.id, types: ['task.keep_alive'], limit: 10 });
    expect(events).toMatchObject([{ payload: { forSeconds: defaults.keepAliveSeconds } }]);

    await expect(keepTaskAlive(h.app, h.alice, task.id, defaults.maxKeepAliveSeconds + 1)).rejects.toMatchObject({
      code: 'bad_input',
    });
    const bob = await h.member();
    await expect(keepTaskAlive(h.app, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });

    const paused = await h.task({ status: 'paused' });
    const before = await h.state();
    await expect(keepTaskAlive(h.app, h.alice, paused.id)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('never wakes'),
    });
    expect(await h.state()).toEqual(before);
  });

  it('counts a send through Hiatus as activity', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 61);
    await sendToTask(h.app, h.alice, task.id, 'still there?');
    expect(await pausedBy(task.id)).toBe(false);
  });

  it('never counts reading an active task: logs, get and list leave the idle clock running', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 61);
    await readLogs(h.app, h.alice, task.id);
    await getTask(h.app, h.alice, task.id);
    await listTasksFor(h.app, h.alice, { limit: 10 });
    expect(await pausedBy(task.id)).toBe(true);
  });

  it('never resumes a paused task for reading its logs, getting or listing it', async () => {
    const task = await h.task({ status: 'paused' });
    const before = await h.state();
    const historyReads = h.agent.historyReads;
    const page = await readLogs(h.app, h.alice, task.id);
    expect(page).toMatchObject({ source: 'snapshot', pending: [] });
    expect(page.entries).toHaveLength(2);
    await getTask(h.app, h.alice, task.id);
    await listTasksFor(h.app, h.alice, { limit: 10 });
    expect(await h.state()).toEqual(before);
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('paused');
    expect(h.agent.historyReads).toBe(historyReads);
    expect(h.agent.received).toEqual([]);
  });
});
