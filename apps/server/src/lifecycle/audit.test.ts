import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { activeTask, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import { deleteAuditLogsBefore, listAuditLogs } from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { acquireBuildJob, completeBuildJob, failStaleBuildJobs } from './jobs.ts';
import { pauseTask } from './pause.ts';
import { resumeTask } from './resume.ts';
import { pushSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask } from './tasks.ts';

describe.each(testBackends())('audit log on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor & { kind: 'user' };
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    lc = testLifecycle(database.db, { agentTimeoutMs: 300 });
    alice = await newMember(database.db);
  });
  afterAll(() => database.drop());
  beforeEach(async () => {
    agent = await new FakeAgent().start();
    agent.say(3);
    return () => agent.stop();
  });

  const recordsOf = async (resourceId: string) =>
    (await listAuditLogs(database.db, { resourceId, limit: 100 })).items.reverse();

  it('writes exactly one record per lifecycle operation, with its reason, actor and request', async () => {
    const withOrigin: Actor = {
      ...alice,
      origin: { requestId: 'req-1', ipAddress: '127.0.0.1', userAgent: 'hiatus-test' },
    };
    const { task } = await createTask(lc, withOrigin, { name: `a-${Math.random()}`, prompt: 'p', agentUrl: agent.url });
    await settle(lc);
    await pauseTask(lc, withOrigin, task.id, { reason: 'task_manual_pause' });
    await settle(lc);
    await resumeTask(lc, withOrigin, task.id);
    await settle(lc);
    await pauseTask(lc, { kind: 'system' }, task.id, { reason: 'task_auto_pause' });
    await deleteTask(lc, withOrigin, task.id);

    const records = await recordsOf(task.id);
    expect(records.map((r) => [r.action, r.buildReason, r.actorKind])).toEqual([
      ['task.create', 'initiator', 'user'],
      ['task.pause', 'task_manual_pause', 'user'],
      ['task.resume', 'task_resume', 'user'],
      ['task.pause', 'task_auto_pause', 'system'],
      ['task.delete', 'initiator', 'user'],
    ]);
    expect(records[1]).toMatchObject({
      actorId: alice.userId,
      requestId: 'req-1',
      ipAddress: '127.0.0.1',
      userAgent: 'hiatus-test',
      diff: { status: { from: 'active', to: 'pausing' }, snapshot: { taken: true, messageCount: 3 } },
    });
    expect(records[3]).toMatchObject({ actorId: null, requestId: null });
    expect(records[4]?.diff).toMatchObject({ snapshotDeleted: true, status: { to: 'deleted' } });
  });

  it('records build completions and failures, including jobs failed for a silent provisioner', async () => {
    await settle(lc); // no job left over from other tests
    const { build } = await createTask(lc, alice, { name: `b-${Math.random()}`, prompt: '', agentUrl: agent.url });
    const job = await acquireBuildJob(lc, 'p1');
    expect(job?.build.id).toBe(build.id);
    await completeBuildJob(lc, build.id, { error: 'no capacity' });
    const [failed] = await recordsOf(build.id);
    expect(failed).toMatchObject({ action: 'build.failed', buildReason: 'initiator', diff: { error: 'no capacity' } });

    const { build: second } = await createTask(lc, alice, {
      name: `c-${Math.random()}`,
      prompt: '',
      agentUrl: agent.url,
    });
    await acquireBuildJob(lc, 'p2');
    await database.db
      .updateTable('workspace_builds')
      .set({ heartbeat_at: new Date(Date.now() - 3_600_000) })
      .where('id', '=', second.id)
      .execute();
    await failStaleBuildJobs(lc, 60_000);
    expect(await recordsOf(second.id)).toMatchObject([{ action: 'build.failed', actorKind: 'system' }]);
  });

  it('writes nothing for a failed operation', async () => {
    const task = await activeTask(lc, alice, agent);
    const before = (await recordsOf(task.id)).length;
    agent.mode = 'garbage';
    await expect(pauseTask(lc, alice, task.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'agent_bad_response',
    });
    await expect(resumeTask(lc, alice, task.id)).rejects.toMatchObject({ code: 'conflict' });
    expect(await recordsOf(task.id)).toHaveLength(before);
    const failures = await database.db
      .selectFrom('task_pause_failures')
      .where('task_id', '=', task.id)
      .selectAll()
      .execute();
    expect(failures).toMatchObject([{ cause: 'garbage', reason: 'task_manual_pause' }]);
  });

  it('records a member’s refused attempt on another member’s task', async () => {
    const bob = await newMember(database.db);
    const task = await activeTask(lc, alice, agent);
    await expect(getTask(lc, bob, task.id)).rejects.toMatchObject({ code: 'not_found' });
    const denied = (await recordsOf(task.id)).filter((r) => r.action === 'task.access_denied');
    expect(denied).toMatchObject([{ actorId: bob.kind === 'user' ? bob.userId : null, resourceType: 'task' }]);
    // A task that does not exist at all leaves no record: there is nothing to protect.
    await expect(getTask(lc, bob, '00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({ code: 'not_found' });
    expect(await recordsOf('00000000-0000-4000-8000-000000000000')).toEqual([]);
  });

  it('records a pushed snapshot, not an ignored one', async () => {
    const task = await activeTask(lc, alice, agent);
    await pushSnapshot(lc, task.id, { messages: agent.messages });
    await pushSnapshot(lc, task.id, { messages: agent.messages, takenAt: new Date(0) });
    expect((await recordsOf(task.id)).filter((r) => r.action === 'snapshot.push')).toHaveLength(1);
  });

  it('filters and pages newest first, and deletes old records in batches', async () => {
    const task = await activeTask(lc, alice, agent);
    const all = await listAuditLogs(database.db, { actorId: alice.userId, limit: 1000 });
    const ids = all.items.map((r) => BigInt(r.id));
    expect([...ids].sort((a, b) => (a > b ? -1 : 1))).toEqual(ids);
    const page1 = await listAuditLogs(database.db, { actorId: alice.userId, limit: 2 });
    const page2 = await listAuditLogs(database.db, { actorId: alice.userId, limit: 2, beforeId: page1.items[1]!.id });
    expect([...page1.items, ...page2.items].map((r) => r.id)).toEqual(all.items.slice(0, 4).map((r) => r.id));
    expect(
      (await listAuditLogs(database.db, { action: 'task.create', resourceId: task.id, limit: 5 })).items,
    ).toHaveLength(1);

    await database.db
      .updateTable('audit_logs')
      .set({ occurred_at: new Date('2020-01-01') })
      .where('resource_id', '=', task.id)
      .execute();
    const total = (
      await database.db
        .selectFrom('audit_logs')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    const removed = await deleteAuditLogsBefore(database.db, new Date('2021-01-01'), 1);
    expect(removed).toBeGreaterThan(0);
    expect(await recordsOf(task.id)).toEqual([]);
    const left = (
      await database.db
        .selectFrom('audit_logs')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    expect(Number(left)).toBe(Number(total) - removed);
  });
});
