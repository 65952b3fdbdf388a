import fc from 'fast-check';
import type { Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { down, up } from '../../../../migrations/0011_snapshot_pages.ts';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import type { AgentMessage } from '../agentapi/schema.ts';
import { deleteSnapshot, findSnapshotDocument, snapshotMessageRange, upsertSnapshot } from './snapshots.ts';

/** Messages of mixed sizes: most small, some larger than a stored page on their own. */
function conversation(count: number): AgentMessage[] {
  return Array.from({ length: count }, (_, i) => ({
    id: i,
    role: i % 2 ? 'agent' : 'user',
    content: `${i}:`.padEnd(i % 37 === 5 ? 150_000 : (i * 7919) % 3_000, 'é'),
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  }));
}

// A log page of a paused task reads the stored pages that hold it, not the whole snapshot: the
// pages must give exactly what slicing the snapshot's messages gives, for every range.
describe.each(testBackends())('snapshot pages on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });

  const pageCount = async (taskId: string) =>
    (await h.db.selectFrom('task_snapshot_pages').where('task_id', '=', taskId).select('first_position').execute())
      .length;

  it('answers every range as the whole snapshot would', async () => {
    const task = await h.task();
    const messages = conversation(400);
    await upsertSnapshot(h.db, { taskId: task.id, messages, source: 'push' });
    expect(await pageCount(task.id)).toBeGreaterThan(10);
    const stored = await findSnapshotDocument(h.db, task.id);
    expect(stored?.document).toEqual({ format: 'agentapi', data: { messages } });

    await fc.assert(
      fc.asyncProperty(fc.nat(420), fc.nat(120), async (from, length) => {
        const to = from + length;
        expect(await snapshotMessageRange(h.db, task.id, from, to)).toEqual(messages.slice(from, to + 1));
      }),
      { numRuns: 60 },
    );
    expect(await snapshotMessageRange(h.db, task.id, 0, 399)).toEqual(messages);
  });

  it('replaces the pages with the snapshot, and drops them with it', async () => {
    const task = await h.task();
    await upsertSnapshot(h.db, { taskId: task.id, messages: conversation(300), source: 'push' });
    const shorter = conversation(3);
    await upsertSnapshot(h.db, { taskId: task.id, messages: shorter, source: 'push' });
    expect(await pageCount(task.id)).toBe(1);
    expect(await snapshotMessageRange(h.db, task.id, 0, 99)).toEqual(shorter);
    await upsertSnapshot(h.db, { taskId: task.id, messages: [], source: 'push' });
    expect(await pageCount(task.id)).toBe(0);
    expect(await snapshotMessageRange(h.db, task.id, 0, 99)).toEqual([]);
    await upsertSnapshot(h.db, { taskId: task.id, messages: shorter, source: 'push' });
    expect(await deleteSnapshot(h.db, task.id)).toBe(true);
    expect(await pageCount(task.id)).toBe(0);
  });

  it('cuts the snapshots taken before the pages existed into pages when migrating', async () => {
    const task = await h.task();
    const messages = conversation(150);
    await upsertSnapshot(h.db, { taskId: task.id, messages, source: 'push' });
    // The migration as it ran on a database that held snapshots already.
    const untyped = h.db as unknown as Kysely<unknown>;
    await down(untyped);
    await up(untyped);
    expect(await pageCount(task.id)).toBe(3); // 64 messages a page
    expect(await snapshotMessageRange(h.db, task.id, 60, 140)).toEqual(messages.slice(60, 141));
  });
});
