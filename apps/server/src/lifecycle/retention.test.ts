import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { listAuditLogs } from '../db/audit.ts';
import type { Task } from '../db/tasks.ts';
import { createTemplate } from '../templates/templates.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { type RetentionOptions, retentionPass } from './retention.ts';
import { getSnapshot } from './snapshots.ts';
import { createTask, getTask } from './tasks.ts';

const day = 86_400_000;
const hour = 3_600_000;

describe.each(testBackends())('retention of paused tasks on %s', (backend) => {
  const h = useHarness(backend, {}, { say: 3 });
  const policy: RetentionOptions = { defaultDays: 7, warningSeconds: 86_400 };

  /** Moves a task's builds `days` into the past, as if it had been paused that long ago. */
  const pausedDaysAgo = (task: Task, days: number) =>
    h.db
      .updateTable('workspace_builds')
      .set({
        created_at: sql`created_at - make_interval(days => ${days})`,
        started_at: sql`started_at - make_interval(days => ${days})`,
        completed_at: sql`completed_at - make_interval(days => ${days})`,
      })
      .where('workspace_id', '=', task.workspaceId)
      .execute();
  /** The suite shares its database: a pass also sees earlier tests' tasks, so each test looks at its own. */
  const pass = async (now: number, tasks: Task[], options: RetentionOptions = policy) => {
    const result = await retentionPass(h.app, { ...options, now: new Date(now) });
    expect(result.failed).toEqual([]);
    const only = (ids: string[]) => ids.filter((id) => tasks.some((t) => t.id === id)).sort();
    return { warned: only(result.warned), deleted: only(result.deleted) };
  };
  const statusOf = async (task: Task) => (await getTask(h.app, h.alice, task.id)).status;
  const eventsOf = (taskId: string, type: string) =>
    h.db.selectFrom('task_events').where('task_id', '=', taskId).where('type', '=', type).selectAll().execute();

  it('deletes only tasks paused longer than the limit, each warned first and deleted no sooner than the warning says', async () => {
    const old = await h.task({ status: 'paused' });
    const fresh = await h.task({ status: 'paused' });
    const active = await h.task();
    await pausedDaysAgo(old, 8);
    const mine = [old, fresh, active];
    const now = Date.now();

    // Past its limit already, but never warned: warned now, deleted a day later.
    expect(await pass(now, mine)).toEqual({ warned: [old.id], deleted: [] });
    expect(await statusOf(old)).toBe('paused');
    const [warning] = await eventsOf(old.id, 'task.retention_warning');
    expect(warning?.payload).toMatchObject({ retentionDays: 7, deleteAt: new Date(now + day).toISOString() });
    expect(await pass(now + 12 * hour, mine)).toEqual({ warned: [], deleted: [] });

    expect(await pass(now + day + 60_000, mine)).toEqual({ warned: [], deleted: [old.id] });
    const deleted = await getTask(h.app, h.alice, old.id);
    expect(deleted.status).toBe('deleted');
    expect(deleted.latestBuild).toMatchObject({ transition: 'delete', initiatorId: null });
    await expect(getSnapshot(h.app, h.alice, old.id)).rejects.toMatchObject({ code: 'not_found' });
    const [record] = (await listAuditLogs(h.db, { resourceId: old.id, limit: 100 })).items.filter(
      (r) => r.action === 'task.delete',
    );
    expect(record).toMatchObject({ actorKind: 'system', diff: { policy: 'paused_retention', retentionDays: 7 } });

    // The fresh one: warned a day before its seventh day, deleted once that has passed.
    expect(await pass(now + 5 * day, mine)).toEqual({ warned: [], deleted: [] });
    expect(await pass(now + 6 * day + hour, mine)).toEqual({ warned: [fresh.id], deleted: [] });
    expect(await pass(now + 6 * day + 2 * hour, mine)).toEqual({ warned: [], deleted: [] });
    // Seven days paused, but warned less than a day ago: not yet.
    expect(await pass(now + 7 * day + 10 * 60_000, mine)).toEqual({ warned: [], deleted: [] });
    expect(await pass(now + 7 * day + 2 * hour, mine)).toEqual({ warned: [], deleted: [fresh.id] });
    expect(await eventsOf(fresh.id, 'task.retention_warning')).toHaveLength(1);
    expect(await statusOf(active)).toBe('active');
    expect(await eventsOf(active.id, 'task.retention_warning')).toHaveLength(0);
  });

  it('leaves alone a task resumed before its delete, and starts afresh when it is paused again', async () => {
    const task = await h.task({ status: 'paused' });
    await pausedDaysAgo(task, 10);
    const now = Date.now();
    expect(await pass(now, [task])).toEqual({ warned: [task.id], deleted: [] });
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    expect(await pass(now + 2 * day, [task])).toEqual({ warned: [], deleted: [] });
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    expect(await pass(now + 2 * day, [task])).toEqual({ warned: [], deleted: [] });
    expect(await statusOf(task)).toBe('paused');
  });

  it("follows a template's own limit: 0 keeps its tasks, a number replaces the default", async () => {
    const admin = await h.member('admin');
    const keep = `keep-${randomUUID().slice(0, 8)}`;
    const short = `short-${randomUUID().slice(0, 8)}`;
    const driver = { driver: 'command', settings: { start: 'true', stop: 'true' } };
    await createTemplate(h.app, admin, keep, { ...driver, pausedRetentionDays: 0 });
    await createTemplate(h.app, admin, short, { ...driver, pausedRetentionDays: 2 });
    const pausedTaskOf = async (template: string) => {
      const { task } = await createTask(h.app, h.alice, { name: `t-${randomUUID()}`, prompt: 'p', template });
      await h.settle();
      await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause', withoutSnapshot: true });
      await h.settle();
      return task;
    };
    const kept = await pausedTaskOf(keep);
    const gone = await pausedTaskOf(short);
    const plain = await h.task({ status: 'paused' });
    const mine = [kept, gone, plain];
    const now = Date.now();
    const noDefault = { defaultDays: 0, warningSeconds: 3_600 };
    expect(await pass(now + day, mine, noDefault)).toEqual({ warned: [], deleted: [] });
    expect(await pass(now + 2 * day - 30 * 60_000, mine, noDefault)).toEqual({ warned: [gone.id], deleted: [] });
    expect(await pass(now + 365 * day, mine, noDefault)).toEqual({ warned: [], deleted: [gone.id] });
    expect(await pass(now + 365 * day, mine, { defaultDays: 7, warningSeconds: 0 })).toEqual({
      warned: [],
      deleted: [plain.id],
    });
    expect(await statusOf(kept)).toBe('paused');
  });

  it('deletes each task once when two server processes run the pass at the same time', async () => {
    const tasks: Task[] = [];
    // One after the other: the factory settles every queued build as it goes.
    for (let i = 0; i < 3; i++) tasks.push(await h.task({ status: 'paused' }));
    const ids = tasks.map((t) => t.id).sort();
    const other = h.otherApp();
    const both = async (now: number) => {
      const results = await Promise.all(
        [h.app, other].map((app) => retentionPass(app, { ...policy, now: new Date(now) })),
      );
      expect(results.flatMap((r) => r.failed)).toEqual([]);
      const only = (list: string[]) => list.filter((id) => ids.includes(id)).sort();
      return { warned: only(results.flatMap((r) => r.warned)), deleted: only(results.flatMap((r) => r.deleted)) };
    };
    const now = Date.now();
    expect(await both(now + 6 * day + hour)).toEqual({ warned: ids, deleted: [] });
    expect(await both(now + 8 * day)).toEqual({ warned: [], deleted: ids });
    for (const task of tasks) {
      const deletes = await h.db
        .selectFrom('workspace_builds')
        .where('workspace_id', '=', task.workspaceId)
        .where('transition', '=', 'delete')
        .selectAll()
        .execute();
      expect(deletes).toHaveLength(1);
      expect(await eventsOf(task.id, 'task.retention_warning')).toHaveLength(1);
    }
  });
});
