import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { listAuditLogs } from '../db/audit.ts';
import type { Task } from '../db/tasks.ts';
import { weekdays } from '../domain/schedules.ts';
import { autoPausePass } from '../lifecycle/auto-pause.ts';
import { meteredPause, meteredResume } from '../lifecycle/metered.ts';
import { createTask, getTask, updateTask } from '../lifecycle/tasks.ts';
import { createTemplate } from '../templates/templates.ts';
import { schedulePass } from './schedules.ts';

/** Every day 08:00–19:00 in Berlin. The clock is injected: the DST days of 2027, after any real "now" of these tests. */
const office = {
  timeZone: 'Europe/Berlin',
  windows: [{ days: [...weekdays], start: '08:00', end: '19:00' }],
};
const at = (iso: string) => new Date(iso);

describe.each(testBackends())('schedules on %s', (backend) => {
  const h = useHarness(backend, {}, { say: 2 });

  const scheduled = async (schedule = office): Promise<Task> => {
    const task = await h.task();
    return updateTask(h.app, h.alice, task.id, { schedule });
  };
  const queueMessage = (taskId: string, content = 'good morning') =>
    h.db.insertInto('task_messages').values({ task_id: taskId, content }).execute();
  const buildsOf = (task: Task, reason: string) =>
    h.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', task.workspaceId)
      .where('reason', '=', reason as never)
      .selectAll()
      .execute();
  const eventsOf = (taskId: string, type: string) =>
    h.db.selectFrom('task_events').where('task_id', '=', taskId).where('type', '=', type).selectAll().execute();
  const statusOf = async (task: Task) => (await getTask(h.app, h.alice, task.id)).status;
  /** The suite shares its database: a pass also sees earlier tests' tasks, so each test looks at its own. */
  const only = (ids: string[], ...tasks: Task[]) => ids.filter((id) => tasks.some((t) => t.id === id)).sort();
  const pass = async (now: string, ...tasks: Task[]) => {
    const result = await schedulePass(h.app, { now: at(now) });
    expect(result.failed).toEqual([]);
    return {
      paused: only(result.paused, ...tasks),
      resumed: only(result.resumed, ...tasks),
      warned: only(result.warned, ...tasks),
    };
  };

  it('warns, pauses at the window end of the spring DST day (19:00 CEST) and resumes at the next start', async () => {
    const task = await scheduled();
    // 2027-03-28: 02:00 CET became 03:00 CEST; 19:00 local is 17:00Z, not 18:00Z.
    expect(await pass('2027-03-28T16:50:00Z', task)).toMatchObject({ paused: [], warned: [] });
    expect((await pass('2027-03-28T16:56:00Z', task)).warned).toEqual([task.id]);
    expect((await pass('2027-03-28T16:57:00Z', task)).warned).toEqual([]);
    const [warning] = await eventsOf(task.id, 'task.schedule_pause_warning');
    expect(warning?.payload).toEqual({ pauseAt: '2027-03-28T17:00:00.000Z', timeZone: 'Europe/Berlin' });
    expect(await statusOf(task)).toBe('active');

    const end = await pass('2027-03-28T17:00:30Z', task);
    expect(end).toMatchObject({ paused: [task.id] });
    const pausing = await getTask(h.app, h.alice, task.id);
    expect(pausing.status).toBe('pausing');
    expect(pausing.latestBuild).toMatchObject({ transition: 'stop', reason: 'task_auto_pause', initiatorId: null });
    const [record] = (await listAuditLogs(h.db, { resourceId: task.id, limit: 100 })).items.filter(
      (r) => r.action === 'task.pause',
    );
    expect(record).toMatchObject({
      actorKind: 'system',
      diff: { policy: 'schedule', schedule: office, windowEndedAt: '2027-03-28T17:00:00.000Z' },
    });
    await h.settle();
    expect(await statusOf(task)).toBe('paused');
    expect((await pass('2027-03-28T22:00:00Z', task)).paused).toEqual([]);

    await queueMessage(task.id);
    // 08:00 CEST on the 29th is 06:00Z.
    expect((await pass('2027-03-29T05:59:00Z', task)).resumed).toEqual([]);
    expect(await statusOf(task)).toBe('paused');
    const start = await pass('2027-03-29T06:00:30Z', task);
    expect(start).toMatchObject({ resumed: [task.id] });
    const resumed = await getTask(h.app, h.alice, task.id);
    expect(resumed.latestBuild).toMatchObject({ transition: 'start', reason: 'task_resume', initiatorId: null });
    await h.settle();
    expect(await statusOf(task)).toBe('active');
    expect((await pass('2027-03-29T07:00:00Z', task)).resumed).toEqual([]);
    expect(await buildsOf(task, 'task_resume')).toHaveLength(1);
  });

  it('pauses at 19:00 CET on the autumn DST day (18:00Z), not an hour early', async () => {
    const task = await scheduled();
    // 2027-10-31: 03:00 CEST fell back to 02:00 CET.
    expect((await pass('2027-10-31T17:30:00Z', task)).paused).toEqual([]);
    expect(await statusOf(task)).toBe('active');
    expect((await pass('2027-10-31T18:00:01Z', task)).paused).toEqual([task.id]);
    expect(await buildsOf(task, 'task_auto_pause')).toHaveLength(1);
  });

  it('never resumes a task a user paused, or one without queued messages, or one a user changed since', async () => {
    const byUser = await scheduled();
    await meteredPause(h.app, h.alice, byUser.id, { reason: 'task_manual_pause' });
    const quiet = await scheduled();
    const changed = await scheduled();
    expect((await pass('2027-04-05T17:10:00Z', byUser, quiet, changed)).paused).toEqual([quiet.id, changed.id].sort());
    await h.settle();
    // The user resumes and pauses again: the pause is theirs now.
    await meteredResume(h.app, h.alice, changed.id);
    await h.settle();
    await meteredPause(h.app, h.alice, changed.id, { reason: 'task_manual_pause' });
    await h.settle();
    await queueMessage(byUser.id);
    await queueMessage(changed.id);
    const start = await pass('2027-04-06T06:10:00Z', byUser, quiet, changed);
    expect(start).toMatchObject({ resumed: [] });
    for (const task of [byUser, quiet, changed]) expect(await statusOf(task)).toBe('paused');
  });

  it('still resumes a task it paused weeks ago, once old claims are cleared', async () => {
    const task = await scheduled();
    expect((await pass('2027-08-02T17:05:00Z', task)).paused).toEqual([task.id]);
    await h.settle();
    await queueMessage(task.id);
    // A pass three weeks later, at night, clears claims older than two weeks: not this one.
    expect(await pass('2027-08-23T22:00:00Z', task)).toEqual({ paused: [], resumed: [], warned: [] });
    expect((await pass('2027-08-24T06:30:00Z', task)).resumed).toEqual([task.id]);
  });

  it('loses a race with auto-pause quietly: the task is paused once and neither pass counts a failure', async () => {
    const task = await scheduled();
    await updateTask(h.app, h.alice, task.id, { idleTimeoutSeconds: 60 });
    await h.db
      .updateTable('tasks')
      .set({ agent_idle_since: new Date(Date.now() - 120_000) })
      .where('id', '=', task.id)
      .execute();
    // The schedule's pass in another server process, auto-pause in this one, at the same time.
    const [bySchedule, byIdleness] = await Promise.all([
      schedulePass(h.otherApp(), { now: at('2027-09-06T17:05:00Z') }),
      autoPausePass(h.app),
    ]);
    expect(bySchedule.failed).toEqual([]);
    expect(byIdleness.failed).toEqual([]);
    const pausedBy = [...bySchedule.paused, ...byIdleness.paused].filter((id) => id === task.id);
    expect(pausedBy).toEqual([task.id]);
    expect(await buildsOf(task, 'task_auto_pause')).toHaveLength(1);
    expect(await statusOf(task)).toBe('pausing');
  });

  it('leaves a task a user resumes after the window closed until the next end', async () => {
    const task = await scheduled();
    expect((await pass('2027-05-03T17:05:00Z', task)).paused).toEqual([task.id]);
    await h.settle();
    // The real clock stands before 2027: a user's resume now counts as after that window end.
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    expect((await pass('2027-05-03T20:00:00Z', task)).paused).toEqual([]);
    expect(await statusOf(task)).toBe('active');
    expect((await pass('2027-05-04T17:05:00Z', task)).paused).toEqual([task.id]);
  });

  it("applies a template's schedule, and a task's own schedule in its place", async () => {
    const admin = await h.member('admin');
    const template = `sched-${randomUUID().slice(0, 8)}`;
    await createTemplate(h.app, admin, template, {
      driver: 'command',
      settings: { start: 'true', stop: 'true' },
      schedule: office,
    });
    const make = async (schedule?: typeof office) =>
      (await createTask(h.app, h.alice, { name: `t-${randomUUID()}`, prompt: 'p', template, schedule })).task;
    const inherits = await make();
    const always = await make({ timeZone: 'UTC', windows: [{ days: [...weekdays], start: '00:00', end: '24:00' }] });
    expect(always.schedule).toMatchObject({ timeZone: 'UTC' });
    await h.settle();
    expect((await pass('2027-06-01T17:30:00Z', inherits, always)).paused).toEqual([inherits.id]);
  });

  it('transitions and warns each task once when two server processes run the pass at the same time', async () => {
    const tasks: Task[] = [];
    // One after the other: the factory settles every queued build as it goes.
    for (let i = 0; i < 3; i++) tasks.push(await scheduled());
    const ids = tasks.map((t) => t.id).sort();
    const other = h.otherApp();
    const both = async (now: Date) => {
      const [a, b] = await Promise.all([schedulePass(h.app, { now }), schedulePass(other, { now })]);
      expect([...a.failed, ...b.failed]).toEqual([]);
      return {
        warned: only([...a.warned, ...b.warned], ...tasks),
        paused: only([...a.paused, ...b.paused], ...tasks),
        resumed: only([...a.resumed, ...b.resumed], ...tasks),
      };
    };
    const warned = await both(at('2027-07-01T16:58:00Z'));
    expect(warned.warned).toEqual(ids);
    const ended = await both(at('2027-07-01T17:00:10Z'));
    expect(ended.paused).toEqual(ids);
    await h.settle();
    await Promise.all(tasks.map((t) => queueMessage(t.id)));
    const started = await both(at('2027-07-02T06:00:10Z'));
    expect(started.resumed).toEqual(ids);
    for (const task of tasks) {
      expect(await buildsOf(task, 'task_auto_pause')).toHaveLength(1);
      expect(await buildsOf(task, 'task_resume')).toHaveLength(1);
      expect(await eventsOf(task.id, 'task.schedule_pause_warning')).toHaveLength(1);
    }
  });
});
