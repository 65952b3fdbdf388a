import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Kysely, Migration, MigrationProvider, MigrationResult } from 'kysely';
import { Migrator, sql } from 'kysely';

const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * `migrations/` at the repository root, beside the sources (src/db/); in the built server
 * (dist/main.mjs, see tsdown.config.ts) their compiled copies in dist/migrations/.
 */
export const migrationFolder = existsSync(path.join(here, 'migrations'))
  ? path.join(here, 'migrations')
  : path.resolve(here, '../../../../migrations');
const migrationFile = /^(\d{4}_.+)\.(ts|mjs)$/;

/** The migration files in `migrations/`, in order, each with its name (the file's without extension). */
async function migrationFiles(): Promise<Array<{ name: string; file: string }>> {
  const files = (await readdir(migrationFolder)).filter((f) => migrationFile.test(f)).sort();
  return files.map((file) => ({ name: file.replace(migrationFile, '$1'), file }));
}

/**
 * Reads `migrations/` like Kysely's FileMigrationProvider, but imports from this module so the
 * TypeScript loader that runs the server (tsx, or Vitest) also loads the migration files.
 */
export const folderProvider: MigrationProvider = {
  async getMigrations() {
    const entries = await Promise.all(
      (await migrationFiles()).map(async ({ name, file }) => {
        const module = (await import(pathToFileURL(path.join(migrationFolder, file)).href)) as Migration;
        return [name, module] as const;
      }),
    );
    return Object.fromEntries(entries);
  },
};

// Migrations run before the schema they create exists, so they see the database untyped.
// biome-ignore lint/suspicious/noExplicitAny: Kysely's documented type for a migrator's database
type AnyDb = Kysely<any>;

function migrator(db: AnyDb): Migrator {
  return new Migrator({ db, provider: folderProvider });
}

class MigrationError extends Error {
  override name = 'MigrationError';
}

/** What `migrateToLatest` reports as it goes: each migration once applied, `done` of `total`. */
export type MigrationProgress = (step: { name: string; done: number; total: number }) => void;

/**
 * Brings the schema to the latest migration, one migration at a time so `onApplied` can tell
 * progress. Servers starting together apply each migration once: one migrates, the others wait
 * for it, then find the schema current. Needs a connection that keeps its session (through
 * PgBouncer: DATABASE_DIRECT_URL).
 */
export async function migrateToLatest(db: AnyDb, onApplied?: MigrationProgress): Promise<MigrationResult[]> {
  // Kysely 0.28's own lock is released inside each migration's transaction, before its commit: a
  // server taking it then still reads the schema as it was and runs the same migration again (seen
  // through PgBouncer, whose round trips widen that window). Held on one connection across every
  // step and its commit, this lock closes it.
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(hashtext('hiatus.migrations'))`.execute(conn);
    try {
      return await migrateSteps(conn, onApplied);
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext('hiatus.migrations'))`.execute(conn);
    }
  });
}

async function migrateSteps(db: AnyDb, onApplied?: MigrationProgress): Promise<MigrationResult[]> {
  const m = migrator(db);
  const total = (await m.getMigrations()).filter((x) => x.executedAt === undefined).length;
  const applied: MigrationResult[] = [];
  for (;;) {
    const { error, results = [] } = await m.migrateUp();
    if (error) {
      const failed = results.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
      throw new MigrationError(`migration ${failed} failed: ${String((error as Error).message ?? error)}`, {
        cause: error,
      });
    }
    const done = results.filter((r) => r.status === 'Success');
    if (done.length === 0) return applied;
    for (const result of done) {
      applied.push(result);
      onApplied?.({ name: result.migrationName, done: applied.length, total: Math.max(total, applied.length) });
    }
  }
}

/**
 * The names of migrations not yet applied, in order; empty when the schema is current. Two small
 * queries and the folder's file names: Kysely's Migrator would load every migration module and
 * introspect every table for it (some 0.5 s on PGlite), a cost a start on a current schema skips.
 */
export async function pendingMigrations(db: AnyDb): Promise<string[]> {
  const [files, applied] = await Promise.all([migrationFiles(), appliedMigrations(db)]);
  return files.map(({ name }) => name).filter((name) => !applied.has(name));
}

/** The migrations Kysely's table records as applied (none before the first migration made it). */
async function appliedMigrations(db: AnyDb): Promise<Set<string>> {
  const { rows } = await sql<{ present: boolean }>`
    SELECT to_regclass('kysely_migration') IS NOT NULL AS present`.execute(db);
  if (!rows[0]?.present) return new Set();
  const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(db);
  return new Set(applied.rows.map((row) => row.name));
}
