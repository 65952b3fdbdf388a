import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { deleteAuditLogsBefore, listAuditLogs } from '../db/audit.ts';
import type { Actor } from '../domain/actor.ts';
import { acquireBuildJob, completeBuildJob, endStaleBuildJobs } from './jobs.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { pushSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask } from './tasks.ts';

describe.each(testBackends())('audit log on %s', (backend) => {
  const h = useHarness(backend, {}, { say: 3 });

  const countAll = async () =>
    Number(
      (
        await h.db
          .selectFrom('audit_logs')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const recordsOf = async (resourceId: string) =>
    (await listAuditLogs(h.db, { resourceId, limit: 100 })).items.reverse();

  it('writes exactly one record per lifecycle operation, with its reason, actor and request', async () => {
    const withOrigin: Actor = {
      ...h.alice,
      origin: { requestId: 'req-1', ipAddress: '127.0.0.1', userAgent: 'hiatus-test' },
    };
    const { task } = await createTask(h.app, withOrigin, {
      name: `a-${Math.random()}`,
      prompt: 'p',
      agentUrl: h.agent.url,
    });
    await h.settle();
    await meteredPause(h.app, withOrigin, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    await meteredResume(h.app, withOrigin, task.id);
    await h.settle();
    await meteredPause(h.app, { kind: 'system' }, task.id, { reason: 'task_auto_pause' });
    await deleteTask(h.app, withOrigin, task.id);

    const records = await recordsOf(task.id);
    expect(records.map((r) => [r.action, r.buildReason, r.actorKind])).toEqual([
      ['task.create', 'initiator', 'user'],
      ['task.pause', 'task_manual_pause', 'user'],
      ['task.resume', 'task_resume', 'user'],
      ['task.pause', 'task_auto_pause', 'system'],
      ['task.delete', 'initiator', 'user'],
    ]);
    expect(records[1]).toMatchObject({
      actorId: h.alice.userId,
      requestId: 'req-1',
      ipAddress: '127.0.0.1',
      userAgent: 'hiatus-test',
      diff: { status: { from: 'active', to: 'pausing' }, snapshot: { taken: true, messageCount: 3 } },
    });
    expect(records[3]).toMatchObject({ actorId: null, requestId: null });
    expect(records[4]?.diff).toMatchObject({ snapshotDeleted: true, status: { to: 'deleted' } });
  });

  it('records build completions and failures, including jobs failed for a silent provisioner', async () => {
    await h.settle(); // no job left over from other tests
    const { build } = await createTask(h.app, h.alice, {
      name: `b-${Math.random()}`,
      prompt: '',
      agentUrl: h.agent.url,
    });
    const job = await acquireBuildJob(h.app, 'p1');
    expect(job?.build.id).toBe(build.id);
    await completeBuildJob(h.app, build.id, { error: 'no capacity' });
    const [failed] = await recordsOf(build.id);
    expect(failed).toMatchObject({ action: 'build.failed', buildReason: 'initiator', diff: { error: 'no capacity' } });

    const { build: second } = await createTask(h.app, h.alice, {
      name: `c-${Math.random()}`,
      prompt: '',
      agentUrl: h.agent.url,
    });
    await acquireBuildJob(h.app, 'p2');
    await h.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 3_600_000) })
      .where('id', '=', second.id)
      .execute();
    await endStaleBuildJobs(h.app, 60_000, 1);
    expect(await recordsOf(second.id)).toMatchObject([{ action: 'build.failed', actorKind: 'system' }]);
  });

  it('writes nothing for a failed operation', async () => {
    const task = await h.task();
    const before = (await recordsOf(task.id)).length;
    h.agent.mode = 'garbage';
    await expect(meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'agent_bad_response',
    });
    await expect(meteredResume(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
    expect(await recordsOf(task.id)).toHaveLength(before);
    const failures = await h.db.selectFrom('task_pause_failures').where('task_id', '=', task.id).selectAll().execute();
    expect(failures).toMatchObject([{ cause: 'garbage', reason: 'task_manual_pause' }]);
  });

  it('records a member’s refused attempt on another member’s task', async () => {
    const bob = await h.member();
    const task = await h.task();
    // Repeated, it is recorded once: a caller cannot make the log grow request by request.
    for (let i = 0; i < 3; i++) {
      await expect(getTask(h.app, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    }
    const denied = (await recordsOf(task.id)).filter((r) => r.action === 'task.access_denied');
    expect(denied).toMatchObject([{ actorId: bob.kind === 'user' ? bob.userId : null, resourceType: 'task' }]);
    // A task that does not exist at all leaves no record: there is nothing to protect.
    await expect(getTask(h.app, bob, '00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({
      code: 'not_found',
    });
    expect(await recordsOf('00000000-0000-4000-8000-000000000000')).toEqual([]);
  });

  it('records a pushed snapshot, not an ignored one', async () => {
    const task = await h.task();
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages });
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages, takenAt: new Date(0) });
    expect((await recordsOf(task.id)).filter((r) => r.action === 'snapshot.push')).toHaveLength(1);
  });

  it('filters and pages newest first, and deletes old records in batches', async () => {
    const task = await h.task();
    const all = await listAuditLogs(h.db, { actorId: h.alice.userId, limit: 1000 });
    const ids = all.items.map((r) => BigInt(r.id));
    expect([...ids].sort((a, b) => (a > b ? -1 : 1))).toEqual(ids);
    const page1 = await listAuditLogs(h.db, { actorId: h.alice.userId, limit: 2 });
    const page2 = await listAuditLogs(h.db, { actorId: h.alice.userId, limit: 2, beforeId: page1.items[1]!.id });
    expect([...page1.items, ...page2.items].map((r) => r.id)).toEqual(all.items.slice(0, 4).map((r) => r.id));
    expect((await listAuditLogs(h.db, { action: 'task.create', resourceId: task.id, limit: 5 })).items).toHaveLength(1);

    await h.db
      .updateTable('audit_logs')
      .set({ occurred_at: new Date('2020-01-01') })
      .where('resource_id', '=', task.id)
      .execute();
    const total = await countAll();
    const removed = await deleteAuditLogsBefore(h.db, new Date('2021-01-01'), 1);
    expect(removed).toBeGreaterThan(0);
    expect(await recordsOf(task.id)).toEqual([]);
    const left = await countAll();
    expect(left).toBe(total - removed);
  });
});
