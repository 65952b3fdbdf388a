import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { useHarness } from '../../test/harness.ts';
import { listAuditLogs } from '../db/audit.ts';
import { createTemplate } from '../templates/templates.ts';
import { readLogs } from './logs.ts';
import { getSnapshot } from './snapshots.ts';
import { createTask, deleteTask, getTask, updateTask } from './tasks.ts';

describe.each(testBackends())('changing a task on %s', (backend) => {
  const h = useHarness(backend);

  const updatesOf = async (taskId: string) =>
    (await listAuditLogs(h.db, { resourceId: taskId, limit: 100 })).items.filter((r) => r.action === 'task.update');

  it('changes the agent URL and the idle timeout, audited with what changed', async () => {
    const task = await h.task({ idleTimeoutSeconds: 600 });
    const other = await new FakeAgent().start();
    try {
      const updated = await updateTask(h.app, h.alice, task.id, { agentUrl: other.url, idleTimeoutSeconds: 900 });
      expect(updated).toMatchObject({ id: task.id, agentUrl: other.url, idleTimeoutSeconds: 900, status: 'active' });
      const [record] = await updatesOf(task.id);
      expect(record).toMatchObject({
        actorId: h.alice.userId,
        diff: {
          agentUrl: { from: h.agent.url, to: other.url },
          idleTimeoutSeconds: { from: 600, to: 900 },
        },
      });
    } finally {
      await other.stop();
    }
  });

  it('clears the idle timeout with null, and writes nothing when nothing changes', async () => {
    const task = await h.task({ idleTimeoutSeconds: 600 });
    expect(await updateTask(h.app, h.alice, task.id, { idleTimeoutSeconds: null })).toMatchObject({
      idleTimeoutSeconds: null,
    });
    await updateTask(h.app, h.alice, task.id, { idleTimeoutSeconds: null, agentUrl: h.agent.url });
    const records = await updatesOf(task.id);
    expect(records).toHaveLength(1);
    expect(records[0]?.diff).toEqual({ idleTimeoutSeconds: { from: 600, to: null } });
  });

  it('refuses an agent URL the address policy refuses, changing nothing', async () => {
    const task = await h.task();
    await expect(updateTask(h.app, h.alice, task.id, { agentUrl: 'http://10.1.2.3:3284' })).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringContaining('agentUrl'),
    });
    expect((await getTask(h.app, h.alice, task.id)).agentUrl).toBe(h.agent.url);
    expect(await updatesOf(task.id)).toEqual([]);
  });

  it("refuses an agent URL for a template's task, whose driver gives it", async () => {
    const admin = await h.member('admin');
    const template = `t-${randomUUID().slice(0, 8)}`;
    await createTemplate(h.app, admin, template, { driver: 'command', settings: { start: 'true', stop: 'true' } });
    const { task } = await createTask(h.app, h.alice, { name: `t-${randomUUID()}`, prompt: 'p', template });
    await expect(updateTask(h.app, h.alice, task.id, { agentUrl: h.agent.url })).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringContaining('driver'),
    });
    // Its idle timeout may change.
    expect(await updateTask(h.app, h.alice, task.id, { idleTimeoutSeconds: 60 })).toMatchObject({
      idleTimeoutSeconds: 60,
    });
    await h.settle();
  });

  it("answers another member not_found, and lets an admin change anyone's task", async () => {
    const task = await h.task();
    const bob = await h.member();
    await expect(updateTask(h.app, bob, task.id, { idleTimeoutSeconds: 60 })).rejects.toMatchObject({
      code: 'not_found',
    });
    const admin = await h.member('admin');
    expect(await updateTask(h.app, admin, task.id, { idleTimeoutSeconds: 60 })).toMatchObject({
      idleTimeoutSeconds: 60,
    });
    expect((await updatesOf(task.id)).map((r) => r.actorId)).toEqual([admin.userId]);
  });

  it('refuses a deleted task, which is still there without its snapshot', async () => {
    h.agent.say(2);
    const task = await h.task({ status: 'paused' });
    await deleteTask(h.app, h.alice, task.id);
    // What the README says of a deleted task: kept, its snapshot gone at once.
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('deleted');
    expect((await readLogs(h.app, h.alice, task.id)).entries).toEqual([]);
    await expect(getSnapshot(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'not_found' });
    await expect(updateTask(h.app, h.alice, task.id, { idleTimeoutSeconds: 60 })).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('deleted'),
    });
    expect(await updatesOf(task.id)).toEqual([]);
    await h.settle();
  });
});
