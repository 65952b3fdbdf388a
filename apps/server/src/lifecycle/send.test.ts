import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { createApp } from '../app.ts';
import { meteredPause } from './metered.ts';
import { sendToTask } from './send.ts';
import { getTask } from './tasks.ts';

describe.each(testBackends())('send on %s', (backend) => {
  const h = useHarness(backend, { resumeWaitMs: 3_000 });

  it('forwards a user message to an active, stable agent', async () => {
    const task = await h.task();
    const result = await sendToTask(h.app, h.alice, task.id, 'please also fix the lint');
    expect(result).toMatchObject({ resumed: false, task: { status: 'active' } });
    expect(h.agent.received).toEqual(['please also fix the lint']);
    expect(h.agent.messages.at(-1)).toMatchObject({ role: 'user', content: 'please also fix the lint' });
  });

  it('refuses while the agent is busy, and tells a paused task to resume first', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    await expect(sendToTask(h.app, h.alice, task.id, 'hi')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('busy'),
    });
    h.agent.status = 'stable';
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    await expect(sendToTask(h.app, h.alice, task.id, 'hi')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('resumeIfPaused'),
    });
    expect(h.agent.received).toEqual([]);
  });

  it('resumes a paused task, waits until it is active, then sends', async () => {
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    const stop = h.provisioner(50);
    try {
      const result = await sendToTask(h.app, h.alice, task.id, 'carry on', { resumeIfPaused: true });
      expect(result).toMatchObject({ resumed: true, task: { status: 'active' } });
      expect(h.agent.received).toEqual(['carry on']);
      expect((await getTask(h.app, h.alice, task.id)).latestBuild).toMatchObject({
        reason: 'task_resume',
        jobStatus: 'succeeded',
      });
    } finally {
      await stop();
    }
  });

  it('lets concurrent sends with resumeIfPaused share one resume, and delivers every message', async () => {
    const task = await h.task({ status: 'paused' });
    const stop = h.provisioner(50);
    try {
      const messages = ['one', 'two', 'three', 'four', 'five'];
      const results = await Promise.allSettled(
        messages.map((m) => sendToTask(h.app, h.alice, task.id, m, { resumeIfPaused: true })),
      );
      expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'sent'))).toEqual(
        messages.map(() => 'sent'),
      );
      const resumedBy = results.filter((r) => r.status === 'fulfilled' && r.value.resumed);
      expect(resumedBy).toHaveLength(1);
      expect([...h.agent.received].sort()).toEqual([...messages].sort());
      const builds = await h.db
        .selectFrom('workspace_builds')
        .where('workspace_id', '=', task.workspaceId)
        .where('reason', '=', 'task_resume')
        .select('id')
        .execute();
      expect(builds).toHaveLength(1);
    } finally {
      await stop();
    }
  });

  it('gives up with a timeout when no provisioner starts the resumed task', async () => {
    const quick = createApp(h.db, { agentTimeoutMs: 300, resumeWaitMs: 300 });
    const task = await h.task({ status: 'paused' });
    await expect(sendToTask(quick, h.alice, task.id, 'hello?', { resumeIfPaused: true })).rejects.toMatchObject({
      code: 'timeout',
    });
    expect(h.agent.received).toEqual([]);
  });
});
