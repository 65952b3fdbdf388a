import { sql } from 'kysely';
import type { Db } from './connection.ts';

/**
 * A table partitioned by month (UTC) on a timestamp column: partitions are named
 * `<table>_YYYY_MM`, and `<table>_default` holds rows of months without a partition of their own.
 */
export type MonthlyPartitionedTable = { table: string; key: string };

/** A partition and its range: `from` and `to` are null for the default partition. */
export type Partition = { name: string; from: Date | null; to: Date | null };

/** The first instant (UTC) of the month `at` is in. */
export function monthStart(at: Date, monthsLater = 0): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + monthsLater, 1));
}

/** The name of the partition holding the month that starts at `month`. */
export function partitionName(spec: MonthlyPartitionedTable, month: Date): string {
  return `${spec.table}_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** Whether `error` is PostgreSQL's lock_not_available, as `lock_timeout` raises it. */
export function isLockTimeout(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '55P03';
}

/** The partitions of the table with their ranges, read back from the catalog in this session's time zone. */
export async function listPartitions(db: Db, spec: MonthlyPartitionedTable): Promise<Partition[]> {
  const result = await sql<Partition>`
    SELECT c.relname AS name,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS "from",
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS "to"
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(${spec.table})
    ORDER BY 2 NULLS LAST`.execute(db);
  return result.rows;
}

/**
 * Creates the partition of the month starting at `month` unless it exists; returns whether it did.
 * Rows of that month already in the default partition move into it, so a row written before the
 * month had its partition never stops it from being made. The partition is created apart and then
 * attached, which locks the parent only against other schema changes (SHARE UPDATE EXCLUSIVE), not
 * against reads and writes; the default partition is held against writes while its rows move and
 * is scanned once by the attach. Waits at most `lockTimeoutMs` for any lock (then throws
 * lock_not_available: see isLockTimeout), and processes doing this at once create it once.
 */
export function createMonthPartition(
  db: Db,
  spec: MonthlyPartitionedTable,
  month: Date,
  lockTimeoutMs: number,
): Promise<boolean> {
  const name = partitionName(spec, month);
  const fallback = `${spec.table}_default`;
  return db.transaction().execute(async (trx) => {
    await holdMaintenanceLock(trx, spec, lockTimeoutMs);
    if (await relationExists(trx, name)) return false;
    const [table, part, key] = [sql.id(spec.table), sql.id(name), sql.id(spec.key)];
    const from = month.toISOString();
    const to = monthStart(month, 1).toISOString();
    await sql`CREATE TABLE ${part} (LIKE ${table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`.execute(trx);
    if (await relationExists(trx, fallback)) {
      const defaultPart = sql.id(fallback);
      await sql`LOCK TABLE ${defaultPart} IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
      await sql`
        WITH moved AS (
          DELETE FROM ${defaultPart} WHERE ${key} >= ${from}::timestamptz AND ${key} < ${to}::timestamptz RETURNING *
        )
        INSERT INTO ${part} SELECT * FROM moved`.execute(trx);
    }
    await sql`ALTER TABLE ${table} ATTACH PARTITION ${part} FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(to)})`.execute(
      trx,
    );
    return true;
  });
}

/**
 * Detaches the partition `name` and drops it, in one short transaction; returns whether it did
 * (false: another process did first). A plain DETACH: CONCURRENTLY is refused while a default
 * partition exists ("cannot detach partitions concurrently when a default partition exists", the
 * same on PostgreSQL and PGlite), so the parent is locked ACCESS EXCLUSIVE for the catalog change
 * only, and waited for at most `lockTimeoutMs` so that writes never queue behind it for long.
 */
export function dropPartition(
  db: Db,
  spec: MonthlyPartitionedTable,
  name: string,
  lockTimeoutMs: number,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await holdMaintenanceLock(trx, spec, lockTimeoutMs);
    const found = await sql<{ found: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM pg_inherits WHERE inhparent = to_regclass(${spec.table}) AND inhrelid = to_regclass(${name})
      ) AS found`.execute(trx);
    if (!found.rows[0]?.found) return false;
    await sql`ALTER TABLE ${sql.id(spec.table)} DETACH PARTITION ${sql.id(name)}`.execute(trx);
    await sql`DROP TABLE ${sql.id(name)}`.execute(trx);
    return true;
  });
}

/** One maintainer of the table's partitions at a time, across processes; locks waited for at most `lockTimeoutMs`. */
async function holdMaintenanceLock(trx: Db, spec: MonthlyPartitionedTable, lockTimeoutMs: number): Promise<void> {
  await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(lockTimeoutMs))}ms`}, true)`.execute(trx);
  await sql`SELECT pg_advisory_xact_lock(hashtext(${`hiatus.partitions.${spec.table}`}))`.execute(trx);
}

async function relationExists(trx: Db, name: string): Promise<boolean> {
  const result = await sql<{ found: boolean }>`SELECT to_regclass(${name}) IS NOT NULL AS found`.execute(trx);
  return result.rows[0]?.found === true;
}
