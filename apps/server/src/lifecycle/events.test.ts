import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { lastEventId, listEvents } from '../db/events.ts';
import type { HiatusEvent } from '../domain/events.ts';
import { autoPausePass } from './auto-pause.ts';
import { listEventsFor, watchEvents } from './events.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { createTask, deleteTask } from './tasks.ts';

describe.each(testBackends())('lifecycle events on %s', (backend) => {
  const h = useHarness(backend);

  const eventsOf = async (taskId: string) =>
    (await listEvents(h.db, { taskId, limit: 100 })).map((e) => ({ type: e.type, payload: e.payload }));

  it('writes exactly one event per change, in order: created, pausing, paused, resuming, resumed, deleted', async () => {
    const task = await h.task({ status: 'pending' });
    await h.settle();
    h.agent.say(3);
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    await deleteTask(h.app, h.alice, task.id);

    const events = await eventsOf(task.id);
    expect(events.map((e) => e.type)).toEqual([
      'task.created',
      'task.pausing',
      'task.paused',
      'task.resuming',
      'task.resumed',
      'task.deleted',
    ]);
    const pausing = events[1]?.payload as { reason: string; snapshotBytes: number; buildId: string };
    expect(pausing).toMatchObject({ reason: 'task_manual_pause', snapshotBytes: expect.any(Number) });
    expect(pausing.snapshotBytes).toBeGreaterThan(0);
    expect(events[2]?.payload).toEqual({ ...pausing });
    const all = await listEvents(h.db, { taskId: task.id, limit: 100 });
    expect(all.every((e) => e.ownerId === h.alice.userId)).toBe(true);
  });

  it('records a failed pause as task.pause_failed with its cause, and a failed build as build.failed', async () => {
    const task = await h.task();
    await h.agent.stop();
    await expect(meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'agent_unreachable',
    });
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause', withoutSnapshot: true });
    await h.settle({ error: 'the workspace would not stop' });
    const events = await eventsOf(task.id);
    expect(events.map((e) => e.type)).toEqual(['task.created', 'task.pause_failed', 'task.pausing', 'build.failed']);
    expect(events[1]?.payload).toMatchObject({ reason: 'task_manual_pause', cause: 'agent_down' });
    expect(events[2]?.payload).toMatchObject({ snapshotBytes: null });
    expect(events[3]?.payload).toMatchObject({ transition: 'stop', error: 'the workspace would not stop' });
  });

  it('writes no event for a change that did not commit', async () => {
    const task = await h.task({ status: 'paused' });
    const before = await eventsOf(task.id);
    await expect(meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'conflict',
    });
    await expect(
      createTask(h.app, h.alice, { name: 'x'.repeat(10), prompt: 'p', agentUrl: h.agent.url, idleTimeoutSeconds: -5 }),
    ).rejects.toThrow();
    expect(await eventsOf(task.id)).toEqual(before);
  });

  it("shows a member their own tasks' events only, an admin everyone's", async () => {
    const bob = await h.member();
    const admin = await h.member('admin');
    const mine = await h.task();
    const his = await h.task({ owner: bob });
    const seen = async (actor: typeof bob) =>
      new Set((await listEventsFor(h.app, actor, { limit: 1000 })).items.map((e) => e.taskId));
    expect((await seen(h.alice)).has(his.id)).toBe(false);
    expect((await seen(bob)).has(mine.id)).toBe(false);
    const adminSees = await seen(admin);
    expect(adminSees.has(mine.id) && adminSees.has(his.id)).toBe(true);
  });

  it('follows commits of several processes in commit order: no gap, no duplicate, and resumes after an id', async () => {
    const watcher = new AbortController();
    const seen: HiatusEvent[] = [];
    const other = h.otherApp();
    // The watcher's starting point, taken before anything commits (as "from now" would, had it run first).
    const start = await lastEventId(h.db);
    const following = (async () => {
      for await (const event of watchEvents(h.app, h.alice, { after: start }, watcher.signal)) seen.push(event);
    })();
    const created = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        createTask(i % 2 ? other : h.app, h.alice, {
          name: `many-${i}`,
          prompt: 'p',
          agentUrl: h.agent.url,
          sendPrompt: false, // one event per task: its creation
        }),
      ),
    );
    const ids = new Set(created.map((c) => c.task.id));
    await vi.waitFor(() => expect(seen.filter((e) => ids.has(e.taskId ?? ''))).toHaveLength(12), { timeout: 30_000 });
    watcher.abort();
    await following;
    const numbers = seen.map((e) => Number(e.id));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(new Set(numbers).size).toBe(numbers.length);
    expect(seen.filter((e) => ids.has(e.taskId ?? '')).map((e) => e.type)).toEqual(Array(12).fill('task.created'));

    // A watcher that reconnects after the sixth event sees exactly the rest.
    const resumed: HiatusEvent[] = [];
    const again = new AbortController();
    const sixth = seen[5]!;
    const replay = (async () => {
      for await (const event of watchEvents(h.app, h.alice, { after: sixth.id }, again.signal)) {
        resumed.push(event);
        if (resumed.length === seen.length - 6) again.abort();
      }
    })();
    await replay;
    expect(resumed.map((e) => e.id)).toEqual(seen.slice(6).map((e) => e.id));
  });

  it('warns once per idle period before an auto-pause, whichever process looks first', async () => {
    const warnEarly = { autoPauseWarningSeconds: 60 };
    const here = h.otherApp(warnEarly);
    const there = h.otherApp(warnEarly);
    const task = await h.task({ idleTimeoutSeconds: 60 });
    const warnings = async () =>
      (await eventsOf(task.id)).filter((e) => e.type === 'task.auto_pause_warning').map((e) => e.payload);
    await Promise.all([autoPausePass(here), autoPausePass(there), autoPausePass(here)]);
    expect(await warnings()).toEqual([
      { idleSeconds: expect.any(Number), idleTimeoutSeconds: 60, pauseAt: expect.any(String) },
    ]);
    await autoPausePass(there);
    expect(await warnings()).toHaveLength(1);
    // The agent works: a new idle period, a new warning. The first warning is made a minute old, so the
    // new idle clock starts after it whatever the clock's resolution.
    await h.db
      .updateTable('task_events')
      .set({ occurred_at: sql`occurred_at - interval '1 minute'` })
      .where('task_id', '=', task.id)
      .where('type', '=', 'task.auto_pause_warning')
      .execute();
    h.agent.status = 'running';
    await autoPausePass(here);
    h.agent.status = 'stable';
    await autoPausePass(there);
    expect(await warnings()).toHaveLength(2);
    // Without the setting, no warning at all.
    const other = await h.task({ idleTimeoutSeconds: 60 });
    await autoPausePass(h.otherApp({ autoPauseWarningSeconds: 0 }));
    expect((await eventsOf(other.id)).map((e) => e.type)).toEqual(['task.created']);
  });
});
