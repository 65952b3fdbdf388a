import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import type { App } from '../app.ts';
import { listAuditLogs } from '../db/audit.ts';
import { listEvents } from '../db/events.ts';
import { defaults } from '../defaults.ts';
import { readLogs } from '../lifecycle/logs.ts';
import { createLogger } from '../logger.ts';
import type { StopLoop } from '../loops.ts';
import { cancelMessage, deliverInbox, startInboxDelivery } from './inbox.ts';
import { sendToTask } from './send.ts';

describe.each(testBackends())('the inbox on %s', (backend) => {
  const h = useHarness(backend);
  const loops: StopLoop[] = [];
  /** Runs `app`'s inbox delivery loop (the suite's app unless said) until the test ends. */
  const delivery = (app: App = h.app) => {
    loops.push(startInboxDelivery(app, { pollMs: 100, concurrency: 4, log: createLogger('silent') }));
  };
  const stopLoops = async () => {
    await Promise.all(loops.splice(0).map((stop) => stop()));
  };
  const statuses = async (taskId: string) =>
    (
      await h.db
        .selectFrom('task_messages')
        .where('task_id', '=', taskId)
        .orderBy('position')
        .select(['content', 'status'])
        .execute()
    ).map((m) => `${m.content}:${m.status}`);

  /** Waits until the task's messages are `contents`, each with its delivered marker committed. */
  const delivered = (taskId: string, contents: string[]) =>
    vi.waitFor(async () => expect(await statuses(taskId)).toEqual(contents.map((c) => `${c}:delivered`)), {
      timeout: 30_000,
      interval: 50,
    });

  it("delivers a busy agent's messages once it is stable, in order, each once", async () => {
    try {
      const task = await h.task();
      h.agent.status = 'running';
      const first = await sendToTask(h.app, h.alice, task.id, 'first');
      const second = await sendToTask(h.app, h.alice, task.id, 'second');
      expect([first.queued, second.queued]).toEqual([true, true]);
      // Busy: nothing goes, and the message is not even offered (no attempt counted).
      expect(await deliverInbox(h.app, task.id)).toBe(0);
      expect(h.agent.received).toEqual([]);
      expect((await readLogs(h.app, h.alice, task.id)).pending.map((p) => p.attempts)).toEqual([0, 0]);
      delivery();
      h.agent.status = 'stable';
      await delivered(task.id, ['first', 'second']);
      expect(h.agent.received).toEqual(['first', 'second']);
      // Nothing more arrives later (a second pass finds nothing to deliver).
      await deliverInbox(h.app, task.id);
      expect(h.agent.received).toEqual(['first', 'second']);
    } finally {
      await stopLoops();
    }
  });

  it('queues a send behind waiting messages even when the agent is stable, so order holds', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    await sendToTask(h.app, h.alice, task.id, 'one');
    h.agent.status = 'stable';
    const later = await sendToTask(h.app, h.alice, task.id, 'two');
    expect(later.queued).toBe(true);
    expect(h.agent.received).toEqual([]);
    expect(await deliverInbox(h.app, task.id)).toBe(2);
    expect(h.agent.received).toEqual(['one', 'two']);
  });

  it('shows queued messages in the log as pending, apart from the entries, until delivered', async () => {
    h.agent.say(2);
    const task = await h.task();
    h.agent.status = 'running';
    const sent = await sendToTask(h.app, h.alice, task.id, 'waiting for you');
    const page = await readLogs(h.app, h.alice, task.id);
    expect(page.entries.map((e) => e.content)).not.toContain('waiting for you');
    expect(page.pending).toEqual([
      {
        messageId: sent.queued ? sent.messageId : 'none',
        content: 'waiting for you',
        truncated: false,
        bytes: 15,
        queuedAt: expect.any(Date),
        attempts: 0,
        lastError: null,
      },
    ]);
    expect(page.pendingCount).toBe(1);
    h.agent.status = 'stable';
    await deliverInbox(h.app, task.id);
    const after = await readLogs(h.app, h.alice, task.id);
    expect(after.pending).toEqual([]);
    expect(after.entries.at(-1)).toMatchObject({ role: 'input', content: 'waiting for you' });
  });

  it('never delivers a cancelled message, and refuses to cancel twice or after delivery', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    const keep = await sendToTask(h.app, h.alice, task.id, 'keep me');
    const drop = await sendToTask(h.app, h.alice, task.id, 'drop me');
    if (!keep.queued || !drop.queued) throw new Error('expected both queued');
    const cancelled = await cancelMessage(h.app, h.alice, task.id, drop.messageId);
    expect(cancelled).toMatchObject({ messageId: drop.messageId, status: 'cancelled' });
    await expect(cancelMessage(h.app, h.alice, task.id, drop.messageId)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('already cancelled'),
    });
    expect((await readLogs(h.app, h.alice, task.id)).pending.map((p) => p.content)).toEqual(['keep me']);
    h.agent.status = 'stable';
    expect(await deliverInbox(h.app, task.id)).toBe(1);
    expect(h.agent.received).toEqual(['keep me']);
    await expect(cancelMessage(h.app, h.alice, task.id, keep.messageId)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('already delivered'),
    });
    expect(await statuses(task.id)).toEqual(['keep me:delivered', 'drop me:cancelled']);

    // Audited, and announced like every other change.
    const audits = await listAuditLogs(h.db, { resourceId: task.id, limit: 100 });
    expect(audits.items.filter((a) => a.action === 'task.cancel_message')).toHaveLength(1);
    const events = await listEvents(h.db, { taskId: task.id, limit: 100 });
    expect(events.map((e) => e.type).filter((t) => t.startsWith('task.message_'))).toEqual([
      'task.message_queued',
      'task.message_queued',
      'task.message_cancelled',
      'task.message_delivered',
    ]);
  });

  it("answers not_found for a message of another task, and for another member's task", async () => {
    const task = await h.task();
    const other = await h.task();
    h.agent.status = 'running';
    const sent = await sendToTask(h.app, h.alice, other.id, 'elsewhere');
    if (!sent.queued) throw new Error('expected queued');
    await expect(cancelMessage(h.app, h.alice, task.id, sent.messageId)).rejects.toMatchObject({ code: 'not_found' });
    const bob = await h.member();
    await expect(cancelMessage(h.app, bob, other.id, sent.messageId)).rejects.toMatchObject({ code: 'not_found' });
    expect(await statuses(other.id)).toEqual(['elsewhere:queued']);
  });

  it('refuses a message past the inbox bound, storing nothing, until one has gone', async () => {
    const task = await h.task({ status: 'paused' });
    await sql`
      INSERT INTO task_messages (task_id, content)
      SELECT ${task.id}, 'filler ' || n FROM generate_series(1, ${defaults.maxQueuedMessagesPerTask}) n`.execute(h.db);
    const before = await h.state();
    await expect(sendToTask(h.app, h.alice, task.id, 'one too many', { resumeIfPaused: true })).rejects.toMatchObject({
      code: 'rate_limited',
      message: expect.stringContaining(`${defaults.maxQueuedMessagesPerTask} messages waiting`),
    });
    // Neither the message nor the resume: they commit together or not at all.
    expect(await h.state()).toEqual(before);
    expect((await statuses(task.id)).at(-1)).toBe(`filler ${defaults.maxQueuedMessagesPerTask}:queued`);
    const [first] = (await readLogs(h.app, h.alice, task.id)).pending;
    await cancelMessage(h.app, h.alice, task.id, first!.messageId);
    expect(await sendToTask(h.app, h.alice, task.id, 'now there is room', { resumeIfPaused: true })).toMatchObject({
      queued: true,
      resumed: true,
    });
  });

  it('keeps a message queued while the agent fails, with the reason, and delivers it once the agent recovers', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    await sendToTask(h.app, h.alice, task.id, 'persist');
    h.agent.status = 'stable';
    h.agent.mode = 'error500';
    expect(await deliverInbox(h.app, task.id)).toBe(0);
    const [pending] = (await readLogs(h.app, h.alice, task.id)).pending;
    // The status look failed: the message was not offered, and the reason is Hiatus's own words.
    expect(pending).toMatchObject({ content: 'persist', lastError: 'the agent answered status 500' });
    h.agent.mode = 'ok';
    expect(await deliverInbox(h.app, task.id)).toBe(1);
    expect(h.agent.received).toEqual(['persist']);
  });

  it('delivers each message once when three processes run the delivery loop on one database', async () => {
    try {
      const tasks = await Promise.all([1, 2, 3].map(() => h.task()));
      h.agent.status = 'running';
      const sent: string[] = [];
      for (let i = 0; i < 12; i++) {
        const content = `m${i}`;
        await sendToTask(h.app, h.alice, tasks[i % 3]!.id, content);
        sent.push(content);
      }
      const apps = [h.app, h.otherApp(), h.otherApp()];
      for (const app of apps) delivery(app);
      h.agent.status = 'stable';
      const mineOf = (n: number) => sent.filter((_, i) => i % 3 === n);
      await vi.waitFor(
        async () => {
          for (const [n, task] of tasks.entries()) {
            expect(await statuses(task.id)).toEqual(mineOf(n).map((m) => `${m}:delivered`));
          }
        },
        { timeout: 30_000, interval: 50 },
      );
      // Each task's messages in the order they were sent; none twice, even after more passes: the
      // loops stopped (no pass in flight), then each process looks at each task once more.
      for (const n of tasks.keys()) expect(h.agent.received.filter((m) => mineOf(n).includes(m))).toEqual(mineOf(n));
      await stopLoops();
      for (const app of apps) for (const task of tasks) expect(await deliverInbox(app, task.id)).toBe(0);
      expect([...h.agent.received].sort()).toEqual([...sent].sort());
    } finally {
      await stopLoops();
    }
  });
});
