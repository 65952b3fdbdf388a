import { sql } from 'kysely';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type BackendName,
  createMigratedDatabase,
  postgresServerUrl,
  type TestDatabase,
  testBackends,
} from '../../test/databases.ts';
import type { App } from '../app.ts';
import { createApp } from '../create-app.ts';
import { auditLogPartitions, insertAuditLog, listAuditLogs } from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import { createMonthPartition, listPartitions } from '../db/partitions.ts';
import { prepareAuditPartitions, removeOldAuditRecords } from './audit.ts';

const day = 86_400_000;
let database: (TestDatabase & { db: Db }) | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

/** A fresh migrated database for one test: retention drops partitions, so tests share none. */
async function fresh(backend: BackendName): Promise<{ db: Db; app: App }> {
  database = await createMigratedDatabase(backend);
  return { db: database.db, app: createApp(database.db) };
}

/** `count` records of the system, occurred at `from`, then `stepMs` apart; returns their ids. */
async function insertRecords(db: Db, from: Date, count: number, stepMs: number): Promise<string[]> {
  const result = await sql<{ id: string }>`
    INSERT INTO audit_logs (occurred_at, actor_kind, action, resource_type)
    SELECT ${from}::timestamptz + make_interval(secs => n * ${stepMs / 1000}), 'system', 'task.create', 'task'
    FROM generate_series(0, ${count - 1}) AS n
    RETURNING id`.execute(db);
  return result.rows.map((r) => String(r.id));
}

/** Where each of `ids` is stored: its partition's name. */
async function partitionsOf(db: Db, ids: string[]): Promise<string[]> {
  const result = await sql<{ id: string; partition: string }>`
    SELECT id, tableoid::regclass::text AS partition FROM audit_logs WHERE id = ANY (${ids}::bigint[])`.execute(db);
  const byId = new Map(result.rows.map((r) => [String(r.id), r.partition]));
  return ids.map((id) => byId.get(id) ?? 'gone');
}

/** A promise that fails after `ms`: a guard for something that must happen without waiting on the test. */
function rejectAfter(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(what)), ms).unref());
}

async function partitionNames(db: Db): Promise<string[]> {
  return (await listPartitions(db, auditLogPartitions)).map((p) => p.name);
}

describe.each(testBackends())('the audit log partitions on %s', (backend) => {
  it('are made for this month and the next, once, taking that month out of the default partition', async () => {
    const { db, app } = await fresh(backend);
    const other = createApp(database!.open());
    const now = new Date('2030-03-15T12:00:00Z');
    // Written before housekeeping made their months: into the default partition, which took them.
    const [march, april, july] = [
      ...(await insertRecords(db, new Date('2030-03-02T00:00:00Z'), 1, 0)),
      ...(await insertRecords(db, new Date('2030-04-30T23:59:59Z'), 1, 0)),
      ...(await insertRecords(db, new Date('2030-07-01T00:00:00Z'), 1, 0)),
    ];
    expect(await partitionsOf(db, [march!, april!, july!])).toEqual([
      'audit_logs_default',
      'audit_logs_default',
      'audit_logs_default',
    ]);

    // Two processes at once: each month's partition is created once.
    const created = (await Promise.all([prepareAuditPartitions(app, now), prepareAuditPartitions(other, now)])).flat();
    expect(created.sort()).toEqual(['audit_logs_2030_03', 'audit_logs_2030_04']);
    expect(await prepareAuditPartitions(app, now)).toEqual([]);
    expect(await partitionsOf(db, [march!, april!, july!])).toEqual([
      'audit_logs_2030_03',
      'audit_logs_2030_04',
      'audit_logs_default',
    ]);
    const [later] = await insertRecords(db, new Date('2030-03-31T23:59:59.999Z'), 1, 0);
    expect(await partitionsOf(db, [later!])).toEqual(['audit_logs_2030_03']);

    const partitions = await listPartitions(db, auditLogPartitions);
    expect(partitions.find((p) => p.name === 'audit_logs_2030_03')).toEqual({
      name: 'audit_logs_2030_03',
      from: new Date('2030-03-01T00:00:00Z'),
      to: new Date('2030-04-01T00:00:00Z'),
    });
    expect(partitions.at(-1)).toEqual({ name: 'audit_logs_default', from: null, to: null });
    // Each new partition has the parent's indexes.
    const indexes = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'audit_logs_2030_03'::regclass`.execute(db);
    expect(indexes.rows[0]!.n).toBe(6);
    const all = await listAuditLogs(db, { limit: 10 });
    expect(all.items.map((r) => r.id)).toEqual([later!, july!, april!, march!]);
  });

  it('keep records of months without a partition (far past, far future) in the default one, listed', async () => {
    const { db, app } = await fresh(backend);
    const [past] = await insertRecords(db, new Date('1999-12-31T23:00:00Z'), 1, 0);
    const [future] = await insertRecords(db, new Date('2199-01-01T00:00:00Z'), 1, 0);
    await insertAuditLog(db, {
      actorKind: 'system',
      actorId: null,
      action: 'task.create',
      resourceType: 'task',
      resourceId: null,
    });
    const current = (await listAuditLogs(db, { limit: 1 })).items[0]!.id;
    expect(await partitionsOf(db, [past!, future!, current])).toEqual([
      'audit_logs_default',
      'audit_logs_default',
      expect.stringMatching(/^audit_logs_\d{4}_\d{2}$/),
    ]);
    expect((await listAuditLogs(db, { limit: 10 })).items.map((r) => r.id)).toEqual([current, future!, past!]);
    expect((await listAuditLogs(db, { since: new Date('2100-01-01'), limit: 10 })).items.map((r) => r.id)).toEqual([
      future!,
    ]);

    // Retention takes from the default partition only what is older than the cut-off.
    const retention = await removeOldAuditRecords(app, 365, 100);
    expect(retention).toEqual({ droppedPartitions: [], deleted: 1 });
    expect((await listAuditLogs(db, { limit: 10 })).items.map((r) => r.id)).toEqual([current, future!]);
  });

  it('are dropped whole by retention when older than the cut-off; the straddling month loses only its old records', async () => {
    const { db, app } = await fresh(backend);
    const other = createApp(database!.open());
    for (const month of ['2020-01', '2020-02', '2020-03', '2020-04']) {
      await createMonthPartition(db, auditLogPartitions, new Date(`${month}-01T00:00:00Z`), 5_000);
    }
    const january = await insertRecords(db, new Date('2020-01-01T00:00:00Z'), 50, 12 * 3600_000);
    const february = await insertRecords(db, new Date('2020-02-01T00:00:00Z'), 50, 12 * 3600_000);
    // March: one record an hour, from the 1st to the 20th.
    const march = await insertRecords(db, new Date('2020-03-01T00:00:00Z'), 20 * 24, 3600_000);
    const april = await insertRecords(db, new Date('2020-04-01T00:00:00Z'), 10, 3600_000);
    const before = await partitionNames(db);
    expect(before).toEqual(expect.arrayContaining(['audit_logs_2020_01', 'audit_logs_2020_02', 'audit_logs_2020_03']));

    // On 10 April with 30 days kept, the cut-off is 11 March: January and February go whole.
    const now = new Date('2020-04-10T00:00:00Z');
    const cutOff = new Date(now.getTime() - 30 * day);
    const runs = await Promise.all([removeOldAuditRecords(app, 30, 7, now), removeOldAuditRecords(other, 30, 7, now)]);
    expect(runs.flatMap((r) => r.droppedPartitions).sort()).toEqual(['audit_logs_2020_01', 'audit_logs_2020_02']);
    expect(runs.reduce((n, r) => n + r.deleted, 0)).toBe(10 * 24);
    expect(await partitionNames(db)).toEqual(
      before.filter((n) => !['audit_logs_2020_01', 'audit_logs_2020_02'].includes(n)),
    );
    const tables = await sql<{ name: string }>`
      SELECT relname AS name FROM pg_class WHERE relname IN ('audit_logs_2020_01', 'audit_logs_2020_02')`.execute(db);
    expect(tables.rows).toEqual([]);

    expect(await partitionsOf(db, [...january, ...february])).toEqual([...january, ...february].map(() => 'gone'));
    const marchLeft = (
      await listAuditLogs(db, { since: new Date('2020-03-01'), until: new Date('2020-04-01'), limit: 1000 })
    ).items;
    expect(marchLeft.map((r) => r.id).reverse()).toEqual(march.slice(10 * 24));
    expect(marchLeft.every((r) => r.occurredAt >= cutOff)).toBe(true);
    expect(await partitionsOf(db, april)).toEqual(april.map(() => 'audit_logs_2020_04'));
    expect(await removeOldAuditRecords(app, 30, 7, now)).toEqual({ droppedPartitions: [], deleted: 0 });
  });
});

// Inserts wait on the retention run only for the moment a partition is detached, never for the run
// (how long they wait: `pnpm bench:partitions`). PostgreSQL only: PGlite has one connection, which
// serializes every statement anyway.
describe.runIf(postgresServerUrl())('a retention run beside audited writes', () => {
  it('lets them commit while it is still deleting, after dropping the old months', async () => {
    const { db, app } = await fresh('postgres');
    const [writer, holder] = [database!.open(), database!.open()];
    for (const month of ['2020-01', '2020-02', '2020-03', '2020-04']) {
      await createMonthPartition(db, auditLogPartitions, new Date(`${month}-01T00:00:00Z`), 5_000);
    }
    await insertRecords(db, new Date('2020-01-01T00:00:00Z'), 50, 12 * 3600_000);
    await insertRecords(db, new Date('2020-02-01T00:00:00Z'), 50, 12 * 3600_000);
    // March: one record an hour from the 1st; the cut-off (the 11th) leaves 240 to delete, 7 a batch.
    const march = await insertRecords(db, new Date('2020-03-01T00:00:00Z'), 20 * 24, 3600_000);

    // A row of 5 March held locked: the run stops at it mid-way, so "during the run" is a state, not a
    // time. Locked through its partition, which leaves the parent free for the run's detaches.
    let release!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holding = holder.transaction().execute(async (trx) => {
      await sql`SELECT id FROM audit_logs_2020_03 WHERE id = ${march[4 * 24]!}::bigint FOR UPDATE`.execute(trx);
      locked();
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    await isLocked;
    let finished = false;
    const run = removeOldAuditRecords(app, 30, 7, new Date('2020-04-10T00:00:00Z')).finally(() => {
      finished = true;
    });
    try {
      await vi.waitFor(
        async () => {
          const waiting = await sql<{ n: number }>`
            SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND wait_event_type = 'Lock' AND query LIKE '%audit_logs%'`.execute(db);
          expect(waiting.rows[0]!.n).toBe(1);
        },
        { timeout: 30_000 },
      );
      // The run has dropped January and February and deleted early March, and is waiting: a write commits.
      expect(await partitionNames(db)).not.toContain('audit_logs_2020_01');
      expect(await partitionNames(db)).not.toContain('audit_logs_2020_02');
      expect(await partitionsOf(db, march.slice(0, 4 * 24 - 7))).toEqual(Array(4 * 24 - 7).fill('gone'));
      const write = insertAuditLog(writer, {
        actorKind: 'system',
        actorId: null,
        action: 'task.update',
        resourceType: 'task',
        resourceId: null,
      });
      // A guard, not a wait: a write queued behind the run never commits while the row stays locked.
      await Promise.race([write, rejectAfter(30_000, 'the audited write waited for the retention run')]);
      expect(finished).toBe(false);
    } finally {
      release();
      await holding;
    }
    const result = await run;
    expect(result.droppedPartitions.sort()).toEqual(['audit_logs_2020_01', 'audit_logs_2020_02']);
    expect(result.deleted).toBe(10 * 24);
    expect((await listAuditLogs(db, { action: 'task.update', limit: 10 })).items).toHaveLength(1);
  });
});
