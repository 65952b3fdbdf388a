import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { listTasksFor } from './tasks.ts';

describe.each(testBackends())('the task list on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });

  it('pages through tasks created in the same millisecond without skipping one', async () => {
    const owner = await h.member();
    const created = await Promise.all(Array.from({ length: 7 }, (_, i) => h.task({ owner, name: `same-ms-${i}` })));
    // Microseconds apart within one millisecond, as tasks created at once (or seeded in bulk) are.
    await sql`
      UPDATE tasks SET created_at = '2026-11-25 12:00:00.123000+00'::timestamptz + (substr(name, 9)::int || ' microseconds')::interval
      WHERE owner_id = ${owner.userId}`.execute(h.db);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await listTasksFor(h.app, owner, { limit: 2, cursor });
      seen.push(...page.items.map((t) => t.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toHaveLength(7);
    expect(new Set(seen)).toEqual(new Set(created.map((t) => t.id)));
    // Newest first: the names' microseconds in descending order.
    const names = new Map(created.map((t) => [t.id, t.name]));
    expect(seen.map((id) => names.get(id))).toEqual(Array.from({ length: 7 }, (_, i) => `same-ms-${6 - i}`));
  });
});
