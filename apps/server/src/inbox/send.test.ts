import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { meteredPause } from '../lifecycle/metered.ts';
import { getTask } from '../lifecycle/tasks.ts';
import { createLogger } from '../logger.ts';
import { startInboxDelivery } from './inbox.ts';
import { sendToTask } from './send.ts';

describe.each(testBackends())('send on %s', (backend) => {
  const h = useHarness(backend);
  /** The app's inbox delivery loop, as a server runs it; returns its stop. */
  const delivery = () => startInboxDelivery(h.app, { pollMs: 100, concurrency: 4, log: createLogger('silent') });

  it('forwards a user message to an active, stable agent at once', async () => {
    const task = await h.task();
    const result = await sendToTask(h.app, h.alice, task.id, 'please also fix the lint');
    expect(result).toMatchObject({ queued: false, resumed: false, task: { status: 'active' } });
    expect(h.agent.received).toEqual(['please also fix the lint']);
    expect(h.agent.messages.at(-1)).toMatchObject({ role: 'user', content: 'please also fix the lint' });
  });

  it('queues for a busy agent instead of failing, and tells a paused task to resume first', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    const busy = await sendToTask(h.app, h.alice, task.id, 'hi');
    expect(busy).toMatchObject({ queued: true, resumed: false, messageId: expect.any(String) });
    h.agent.status = 'stable';
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    await expect(sendToTask(h.app, h.alice, task.id, 'hi')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('resumeIfPaused'),
    });
    expect(h.agent.received).toEqual([]);
  });

  it('queues the message with the resume of a paused task, answers at once, and delivers it once active', async () => {
    const task = await h.task({ status: 'paused' });
    const result = await sendToTask(h.app, h.alice, task.id, 'carry on', { resumeIfPaused: true });
    expect(result).toMatchObject({ queued: true, resumed: true, task: { status: 'pending' } });
    // The message and the resume committed together.
    const build = (await getTask(h.app, h.alice, task.id)).latestBuild;
    expect(build).toMatchObject({ reason: 'task_resume', jobStatus: 'pending' });
    const stored = await h.db.selectFrom('task_messages').where('task_id', '=', task.id).selectAll().execute();
    expect(stored).toMatchObject([{ status: 'queued', content: 'carry on' }]);
    expect(h.agent.received).toEqual([]);

    const stops = [h.provisioner(50), delivery()];
    try {
      await vi.waitFor(() => expect(h.agent.received).toEqual(['carry on']), { timeout: 20_000, interval: 50 });
      expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
    } finally {
      await Promise.all(stops.map((stop) => stop()));
    }
  });

  it('lets concurrent sends with resumeIfPaused share one resume, and delivers every message once', async () => {
    const task = await h.task({ status: 'paused' });
    const messages = ['one', 'two', 'three', 'four', 'five'];
    const results = await Promise.all(
      messages.map((m) => sendToTask(h.app, h.alice, task.id, m, { resumeIfPaused: true })),
    );
    expect(results.map((r) => [r.queued, r.task.status])).toEqual(messages.map(() => [true, expect.any(String)]));
    expect(results.filter((r) => r.resumed)).toHaveLength(1);
    const stops = [h.provisioner(50), delivery()];
    try {
      const inbox = () =>
        h.db
          .selectFrom('task_messages')
          .where('task_id', '=', task.id)
          .orderBy('position')
          .select(['content', 'status'])
          .execute();
      await vi.waitFor(
        async () => expect((await inbox()).map((m) => m.status)).toEqual(messages.map(() => 'delivered')),
        {
          timeout: 20_000,
          interval: 50,
        },
      );
      // In the order the sends were queued (by the database's positions), each once.
      expect(h.agent.received).toEqual((await inbox()).map((m) => m.content));
      const builds = await h.db
        .selectFrom('workspace_builds')
        .where('workspace_id', '=', task.workspaceId)
        .where('reason', '=', 'task_resume')
        .select('id')
        .execute();
      expect(builds).toHaveLength(1);
    } finally {
      await Promise.all(stops.map((stop) => stop()));
    }
  });

  it('answers at once with the message queued even when no provisioner starts the resumed task', async () => {
    const task = await h.task({ status: 'paused' });
    // It answers while the start it queued is still waiting for a provisioner (how soon is not a test's business).
    const result = await sendToTask(h.app, h.alice, task.id, 'hello?', { resumeIfPaused: true });
    expect(result).toMatchObject({ queued: true, resumed: true, task: { status: 'pending' } });
    expect(result.task.latestBuild).toMatchObject({ transition: 'start', jobStatus: 'pending' });
    expect(h.agent.received).toEqual([]);
  });
});
