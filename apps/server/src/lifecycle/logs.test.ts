import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { sendToTask } from '../inbox/send.ts';
import { type LogEntry, readLogs } from './logs.ts';
import { meteredPause } from './metered.ts';
import { getSnapshot, pushSnapshot } from './snapshots.ts';
import { createTask } from './tasks.ts';

describe.each(testBackends())('logs and snapshots on %s', (backend) => {
  const h = useHarness(backend);

  const readAll = async (taskId: string, limit: number) => {
    const pages: Awaited<ReturnType<typeof readLogs>>[] = [];
    let cursor: number | undefined;
    do {
      const page = await readLogs(h.app, h.alice, taskId, { cursor, limit });
      pages.push(page);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined && pages.length < 100);
    return pages;
  };
  const expectedEntries = (): LogEntry[] =>
    h.agent.messages.map((m) => ({
      id: m.id,
      position: m.id,
      segment: 1,
      role: m.role === 'user' ? 'input' : 'output',
      content: m.content,
      time: new Date(m.time),
    }));

  it('reads an active task live, page by page', async () => {
    h.agent.say(25);
    const task = await h.task();
    const pages = await readAll(task.id, 10);
    expect(pages.map((p) => p.entries.length)).toEqual([10, 10, 5]);
    expect(pages.every((p) => p.source === 'live' && p.snapshotAt === null)).toBe(true);
    expect(pages.flatMap((p) => p.entries)).toEqual(expectedEntries());
  });

  it('ends a page of large entries at its byte bound, and goes on from there', async () => {
    h.agent.say(7, 1_000_000);
    const task = await h.task();
    const pages = await readAll(task.id, 100);
    // 4 MiB holds four entries of 1 MB; a page never holds less than one.
    expect(pages.map((p) => p.entries.length)).toEqual([4, 3]);
    expect(pages.flatMap((p) => p.entries)).toEqual(expectedEntries());
    h.agent.messages = [];
    h.agent.say(1, 5_000_000);
    const huge = await h.task();
    expect((await readAll(huge.id, 100)).map((p) => p.entries.length)).toEqual([1]);
  });

  it('serves the pages of a live log from one fetch of the agent, shared by readers at once', async () => {
    h.agent.say(25);
    const task = await h.task();
    // A ttl no loaded machine outlasts: the test is about the count, not the clock.
    const app = h.otherApp({ liveHistoryTtlMs: 60_000 });
    const fetchesBefore = h.agent.historyReads;
    const read = (options: { cursor?: number; limit?: number }) => readLogs(app, h.alice, task.id, options);
    const pages = [await read({ limit: 5 })];
    while (pages.at(-1)?.nextCursor != null) pages.push(await read({ cursor: pages.at(-1)!.nextCursor!, limit: 5 }));
    await Promise.all(Array.from({ length: 10 }, (_, i) => read({ cursor: i, limit: 5 })));
    expect(pages.flatMap((p) => p.entries)).toEqual(expectedEntries());
    expect(h.agent.historyReads - fetchesBefore).toBe(1);

    // Readers arriving together on a cold cache share the one fetch in flight.
    const cold = h.otherApp({ liveHistoryTtlMs: 60_000 });
    await Promise.all(Array.from({ length: 10 }, () => readLogs(cold, h.alice, task.id, { limit: 5 })));
    expect(h.agent.historyReads - fetchesBefore).toBe(2);

    // A message sent through Hiatus shows at the next read, not a ttl later.
    await sendToTask(app, h.alice, task.id, 'one more thing');
    const after = await read({ cursor: 24 });
    expect(after.entries.map((e) => e.content)).toEqual(['one more thing']);
    expect(h.agent.historyReads - fetchesBefore).toBe(3);
  });

  it('fetches again once the history is older than the ttl, and for every page with a ttl of 0', async () => {
    h.agent.say(4);
    const task = await h.task();
    const brief = h.otherApp({ liveHistoryTtlMs: 50 });
    const uncached = h.otherApp({ liveHistoryTtlMs: 0 });
    const fetchesBefore = h.agent.historyReads;
    await readLogs(brief, h.alice, task.id);
    h.agent.say(1);
    // Read until the new message shows: each read before the ttl ends is served the history kept.
    await vi.waitFor(async () => expect((await readLogs(brief, h.alice, task.id)).entries).toHaveLength(5), {
      timeout: 30_000,
      interval: 10,
    });
    expect(h.agent.historyReads - fetchesBefore).toBe(2);
    await readLogs(uncached, h.alice, task.id);
    await readLogs(uncached, h.alice, task.id);
    expect(h.agent.historyReads - fetchesBefore).toBe(4);
  });

  it('reads a paused task from its snapshot, page by page, saying when it was taken', async () => {
    h.agent.say(25);
    const task = await h.task();
    const { snapshot } = await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.settle();
    await h.agent.stop(); // the workspace is down: the log must not need it
    const pages = await readAll(task.id, 10);
    expect(pages.map((p) => p.entries.length)).toEqual([10, 10, 5]);
    expect(pages.every((p) => p.source === 'snapshot')).toBe(true);
    expect(pages[0]?.snapshotAt).toEqual(snapshot.taken ? snapshot.createdAt : null);
    expect(pages.flatMap((p) => p.entries)).toEqual(expectedEntries());
    expect(pages.at(-1)?.nextCursor).toBeNull();
  });

  it('reads from the snapshot while the stop is still pending', async () => {
    h.agent.say(3);
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    const page = await readLogs(h.app, h.alice, task.id);
    expect(page).toMatchObject({ source: 'snapshot', nextCursor: null });
    expect(page.entries).toHaveLength(3);
  });

  it('falls back to the snapshot when an active agent does not answer', async () => {
    h.agent.say(4);
    const task = await h.task();
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(0, 2) });
    h.agent.mode = 'error500';
    const page = await readLogs(h.app, h.alice, task.id);
    expect(page.source).toBe('snapshot');
    expect(page.entries.map((e) => e.id)).toEqual([0, 1]);
    expect(page.notice).toMatch(/did not answer/);
  });

  it('answers an empty log with a reason when there is neither agent nor snapshot', async () => {
    const task = await h.task();
    await h.agent.stop();
    const page = await readLogs(h.app, h.alice, task.id);
    expect(page).toMatchObject({ source: 'snapshot', snapshotAt: null, entries: [], nextCursor: null });
    expect(page.notice).toMatch(/agent did not answer/);
    const pending = await createTask(h.app, h.alice, { name: `p-${Math.random()}`, prompt: '', agentUrl: h.agent.url });
    expect((await readLogs(h.app, h.alice, pending.task.id)).notice).toMatch(/pending and no snapshot was ever taken/);
  });

  it('refuses to read a snapshot in a format it does not know, clearly', async () => {
    h.agent.say(2);
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
    await h.db.deleteFrom('task_snapshot_stats').where('task_id', '=', task.id).execute();
    await h.db
      .updateTable('task_snapshots')
      .set({ log_snapshot: sql`'{"format": "agentapi-v9", "data": {}}'::jsonb` })
      .where('task_id', '=', task.id)
      .execute();
    await expect(readLogs(h.app, h.alice, task.id)).rejects.toMatchObject({
      code: 'unknown_snapshot_format',
      message: expect.stringContaining('"agentapi-v9"'),
    });
    await expect(getSnapshot(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'unknown_snapshot_format' });
  });

  it('keeps a pushed snapshot from replacing a newer one', async () => {
    h.agent.say(6);
    const task = await h.task();
    const pushed = await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(0, 4) });
    expect(pushed).toMatchObject({ stored: true, snapshot: { messageCount: 4 } });
    const stale = await pushSnapshot(h.app, task.id, {
      messages: h.agent.messages.slice(0, 2),
      takenAt: new Date(Date.now() - 60_000),
    });
    expect(stale).toMatchObject({ stored: false });
    expect((await getSnapshot(h.app, h.alice, task.id)).messageCount).toBe(4);
    // A tail of a conversation is fine, a conversation with holes is not.
    expect(await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(3) })).toMatchObject({ stored: true });
    await expect(
      pushSnapshot(h.app, task.id, { messages: [h.agent.messages[0]!, h.agent.messages[2]!] }),
    ).rejects.toMatchObject({ code: 'bad_input', message: expect.stringContaining('run on one by one') });
  });

  it('pages a snapshot holding only the tail of a conversation by message id', async () => {
    h.agent.say(30);
    const task = await h.task();
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(20) });
    await h.agent.stop();
    const first = await readLogs(h.app, h.alice, task.id, { limit: 4 });
    expect(first.entries.map((e) => e.id)).toEqual([20, 21, 22, 23]);
    const next = await readLogs(h.app, h.alice, task.id, { cursor: first.nextCursor!, limit: 4 });
    expect(next.entries.map((e) => e.id)).toEqual([24, 25, 26, 27]);
    const last = await readLogs(h.app, h.alice, task.id, { cursor: 27, limit: 4 });
    expect(last).toMatchObject({ nextCursor: null });
    expect(last.entries.map((e) => e.id)).toEqual([28, 29]);
  });
});
