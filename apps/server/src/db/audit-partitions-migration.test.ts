import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Migration, Migrator, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { type AuditFilter, listAuditLogs } from './audit.ts';
import type { Db } from './connection.ts';
import { migrateToLatest, migrationFolder } from './migrate.ts';

/** The migrations up to and including `last`, as the folder holds them. */
function migrationsUpTo(last: string) {
  return {
    async getMigrations(): Promise<Record<string, Migration>> {
      const files = (await readdir(migrationFolder)).filter((f) => /^\d{4}_.+\.ts$/.test(f) && f <= `${last}.ts`);
      const entries = await Promise.all(
        files.sort().map(async (file) => {
          const module = (await import(pathToFileURL(path.join(migrationFolder, file)).href)) as Migration;
          return [file.replace(/\.ts$/, ''), module] as const;
        }),
      );
      return Object.fromEntries(entries);
    },
  };
}

/** Every page of `filter`, `limit` records at a time, as audit.list serves them. */
async function allPages(db: Db, filter: AuditFilter): Promise<unknown[][]> {
  const pages: unknown[][] = [];
  let beforeId: string | undefined;
  for (;;) {
    const { items, more } = await listAuditLogs(db, { ...filter, beforeId });
    pages.push(items);
    if (!more) return pages;
    beforeId = items.at(-1)!.id;
  }
}

let database: TestDatabase | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

describe.each(testBackends())('migration 0012 (partitioned audit_logs) on %s', (backend) => {
  it('keeps every record, its id and the pages audit.list gives; ids go on from the old sequence', async () => {
    database = await createTestDatabase(backend);
    const db = database.open();
    const { error } = await new Migrator({ db, provider: migrationsUpTo('0011_snapshot_pages') }).migrateToLatest();
    expect(error).toBeUndefined();

    const [alice, bob] = await db
      .insertInto('users')
      .values([{ username: 'alice' }, { username: 'bob' }])
      .returning('id')
      .execute();
    // Records over 14 months up to now, one far in the past and one far in the future, mixed actors,
    // actions and reasons; then some deleted (gaps in the ids) and an insert rolled back (a used id).
    await sql`
      INSERT INTO audit_logs (occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, ip_address, diff)
      SELECT NOW() - make_interval(hours => n * 23),
             CASE WHEN n % 3 = 0 THEN 'system'::audit_actor_kind ELSE 'user' END,
             CASE WHEN n % 3 = 0 THEN NULL WHEN n % 3 = 1 THEN ${alice!.id}::uuid ELSE ${bob!.id}::uuid END,
             (ARRAY['task.create', 'task.pause', 'task.resume'])[1 + n % 3],
             'task',
             md5((n % 7)::text)::uuid,
             (ARRAY['initiator', 'task_manual_pause', NULL]::build_reason[])[1 + n % 3],
             '127.0.0.1',
             jsonb_build_object('n', n)
      FROM generate_series(1, 450) AS n`.execute(db);
    await sql`
      INSERT INTO audit_logs (occurred_at, actor_kind, action, resource_type)
      VALUES ('1990-06-01T00:00:00Z', 'system', 'task.create', 'task'), ('2190-06-01T00:00:00Z', 'system', 'task.create', 'task')`.execute(
      db,
    );
    await sql`DELETE FROM audit_logs WHERE id % 17 = 0`.execute(db);
    await db
      .transaction()
      .execute(async (trx) => {
        await sql`INSERT INTO audit_logs (actor_kind, action, resource_type) VALUES ('system', 'task.create', 'task')`.execute(
          trx,
        );
        throw new Error('rolled back');
      })
      .catch(() => undefined);
    const lastUsed = (await sql<{ last_value: string }>`SELECT last_value FROM audit_logs_id_seq`.execute(db)).rows[0]!
      .last_value;

    const filters: AuditFilter[] = [
      { limit: 25 },
      { limit: 7, actorId: alice!.id },
      { limit: 9, action: 'task.pause' },
      { limit: 11, buildReason: 'task_manual_pause' },
      { limit: 5, resourceId: (await sql<{ id: string }>`SELECT md5('3')::uuid AS id`.execute(db)).rows[0]!.id },
      { limit: 13, since: new Date(Date.now() - 90 * 86_400_000), until: new Date(Date.now() - 10 * 86_400_000) },
    ];
    const before = await Promise.all(filters.map((f) => allPages(db, f)));
    const count = async () =>
      Number((await sql<{ n: string }>`SELECT count(*) AS n FROM audit_logs`.execute(db)).rows[0]!.n);
    const rowsBefore = await count();
    const constraints = async () =>
      (
        await sql<{ name: string; definition: string }>`
          SELECT conname AS name, pg_get_constraintdef(oid) AS definition
          FROM pg_constraint WHERE conrelid = 'audit_logs'::regclass ORDER BY conname`.execute(db)
      ).rows;
    const constraintsBefore = await constraints();

    expect((await migrateToLatest(db)).map((r) => r.migrationName)).toContain('0012_partitioned_audit_logs');

    expect(await Promise.all(filters.map((f) => allPages(db, f)))).toEqual(before);
    expect(await count()).toBe(rowsBefore);
    // The same constraints under the same names; the primary key now holds the partition key.
    expect(await constraints()).toEqual(
      constraintsBefore.map((c) =>
        c.name === 'audit_logs_pkey' ? { ...c, definition: 'PRIMARY KEY (id, occurred_at)' } : c,
      ),
    );
    const kinds = await sql<{
      kind: string;
    }>`SELECT relkind AS kind FROM pg_class WHERE oid = 'audit_logs'::regclass`.execute(db);
    expect(kinds.rows[0]!.kind).toBe('p');
    // Months in the last ten years have partitions of their own; the far past and future the default one.
    const placed = await sql<{ partition: string; n: number }>`
      SELECT tableoid::regclass::text AS partition, count(*)::int AS n FROM audit_logs GROUP BY 1 ORDER BY 1`.execute(
      db,
    );
    expect(placed.rows.length).toBeGreaterThanOrEqual(14);
    expect(placed.rows.find((r) => r.partition === 'audit_logs_default')?.n).toBe(2);
    const misplaced = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM audit_logs
      WHERE tableoid::regclass::text <> 'audit_logs_' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY_MM')
        AND tableoid::regclass::text <> 'audit_logs_default'`.execute(db);
    expect(misplaced.rows[0]!.n).toBe(0);

    // A new record takes an id past every id the old sequence gave, rolled back ones too.
    const inserted = await sql<{ id: string }>`
      INSERT INTO audit_logs (actor_kind, action, resource_type) VALUES ('system', 'task.create', 'task') RETURNING id`.execute(
      db,
    );
    expect(BigInt(inserted.rows[0]!.id)).toBe(BigInt(lastUsed) + 1n);
    expect((await listAuditLogs(db, { limit: 1 })).items[0]!.id).toBe(String(inserted.rows[0]!.id));
  });
});
