import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileMigrationProvider, type Kysely, type MigrationResult, Migrator } from 'kysely';
import { repoRoot } from '../config.ts';

export const migrationFolder = path.join(repoRoot, 'migrations');

function migrator(db: Kysely<unknown>): Migrator {
  return new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder }) });
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/**
 * Brings the schema to the latest migration. Kysely holds a PostgreSQL advisory lock for the
 * whole run, so servers starting together apply each migration once; the others wait, then find
 * nothing left to do.
 */
export async function migrateToLatest(db: Kysely<unknown>): Promise<MigrationResult[]> {
  const { error, results = [] } = await migrator(db).migrateToLatest();
  if (error) {
    const failed = results.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new MigrationError(`migration ${failed} failed: ${String((error as Error).message ?? error)}`, {
      cause: error,
    });
  }
  return results;
}

/** The names of migrations not yet applied; empty when the schema is current. */
export async function pendingMigrations(db: Kysely<unknown>): Promise<string[]> {
  const migrations = await migrator(db).getMigrations();
  return migrations.filter((m) => m.executedAt === undefined).map((m) => m.name);
}
