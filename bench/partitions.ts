// pnpm bench:partitions: how long audited writes wait on an audit retention run. Two whole months
// to drop and the straddling month's old records to delete in small batches, while one connection
// writes audit records in a loop; each write's latency is noted, before the run (quiet) and during
// it. The test (apps/server/src/audit/partitions.test.ts) proves writes commit during a run; this
// says how long they wait. Prints a table; writes bench/results/partitions.json.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { removeOldAuditRecords } from '../apps/server/src/audit/audit.ts';
import { createApp } from '../apps/server/src/create-app.ts';
import { auditLogPartitions, insertAuditLog } from '../apps/server/src/db/audit.ts';
import { type Db, openDatabase } from '../apps/server/src/db/connection.ts';
import { migrateToLatest } from '../apps/server/src/db/migrate.ts';
import { createMonthPartition } from '../apps/server/src/db/partitions.ts';
import { quantile, withDatabase } from './support.ts';

/** Old records of the straddling month to delete; 86,400 by default (one every 10 s from 1 to 11 March). */
const straddling = Number(process.env.BENCH_AUDIT_DELETES ?? 86_400);
const batchSize = Number(process.env.BENCH_AUDIT_BATCH ?? 25);

const round = (n: number) => Math.round(n * 100) / 100;

/** `count` records of the system from `from`, `stepMs` apart. */
async function insertRecords(db: Db, from: Date, count: number, stepMs: number): Promise<void> {
  await sql`
    INSERT INTO audit_logs (occurred_at, actor_kind, action, resource_type)
    SELECT ${from}::timestamptz + make_interval(secs => n * ${stepMs / 1000}::float8), 'system', 'task.create', 'task'
    FROM generate_series(0, ${count - 1}) AS n`.execute(db);
}

/** Writes audit records one after another until `stop()`; each write's ms. */
function writeLoop(db: Db) {
  const latencies: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      await insertAuditLog(db, {
        actorKind: 'system',
        actorId: null,
        action: 'task.update',
        resourceType: 'task',
        resourceId: null,
      });
      latencies.push(performance.now() - started);
    }
  })();
  return {
    latencies,
    stop: async () => {
      running = false;
      await done;
      return [...latencies].sort((a, b) => a - b);
    },
  };
}

async function main(url: string) {
  const runner = openDatabase({ kind: 'postgres', url, poolSize: 2 });
  const writer = openDatabase({ kind: 'postgres', url, poolSize: 1 });
  try {
    const { db } = runner;
    await migrateToLatest(db);
    for (const month of ['2020-01', '2020-02', '2020-03', '2020-04']) {
      await createMonthPartition(db, auditLogPartitions, new Date(`${month}-01T00:00:00Z`), 5_000);
    }
    await insertRecords(db, new Date('2020-01-01T00:00:00Z'), 100_000, 26_000);
    await insertRecords(db, new Date('2020-02-01T00:00:00Z'), 100_000, 25_000);
    // From 1 March, `straddling` records before the cut-off (11 March) and as many after it.
    await insertRecords(db, new Date('2020-03-01T00:00:00Z'), 2 * straddling, (10 * 86_400_000) / straddling);
    await sql`ANALYZE audit_logs`.execute(db);

    const quietLoop = writeLoop(writer.db);
    while (quietLoop.latencies.length < 200) await new Promise((resolve) => setImmediate(resolve));
    const quiet = await quietLoop.stop();

    const during = writeLoop(writer.db);
    const started = performance.now();
    const result = await removeOldAuditRecords(createApp(db), 30, batchSize, new Date('2020-04-10T00:00:00Z'));
    const runMs = performance.now() - started;
    const busy = await during.stop();

    const figures = {
      droppedPartitions: result.droppedPartitions,
      deleted: result.deleted,
      batchSize,
      runMs: round(runMs),
      writesDuringRun: busy.length,
      writeMs: {
        quiet: { p50: round(quantile(quiet, 0.5)), p99: round(quantile(quiet, 0.99)), max: round(quiet.at(-1)!) },
        duringRun: { p50: round(quantile(busy, 0.5)), p99: round(quantile(busy, 0.99)), max: round(busy.at(-1)!) },
      },
    };
    console.table([
      {
        measure: `retention run ms (2 months dropped, ${result.deleted} deleted, ${batchSize} a batch)`,
        value: figures.runMs,
      },
      { measure: 'audited writes during the run', value: figures.writesDuringRun },
      { measure: 'write p50 ms, quiet', value: figures.writeMs.quiet.p50 },
      { measure: 'write max ms, quiet', value: figures.writeMs.quiet.max },
      { measure: 'write p50 ms, during the run', value: figures.writeMs.duringRun.p50 },
      { measure: 'write p99 ms, during the run', value: figures.writeMs.duringRun.p99 },
      { measure: 'write max ms, during the run', value: figures.writeMs.duringRun.max },
      // A lock held for the whole run would make this about 1.
      { measure: 'worst write during the run ÷ the run', value: round(figures.writeMs.duringRun.max / runMs) },
    ]);
    const out = path.join(import.meta.dirname, 'results', 'partitions.json');
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`wrote ${out}`);
  } finally {
    await writer.close();
    await runner.close();
  }
}

await withDatabase(main);
process.exit(0);
