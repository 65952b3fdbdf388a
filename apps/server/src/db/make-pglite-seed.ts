import { renameSync, rmSync } from 'node:fs';
import { openDatabase } from './connection.ts';
import { migrateToLatest } from './migrate.ts';

/**
 * Makes `folder` a PGlite data folder with every migration applied, and nothing else (no user, no
 * key): the seed new folders start as (see pglite-seed.ts). Built beside it and renamed into place,
 * so a build cut short leaves no half-made seed. Returns the migrations applied.
 */
export async function makePgliteSeed(folder: string): Promise<string[]> {
  const building = `${folder}.building`;
  rmSync(building, { recursive: true, force: true });
  const database = openDatabase({ kind: 'pglite', dataDir: building, seed: null });
  let applied: string[];
  try {
    applied = (await migrateToLatest(database.db)).map((result) => result.migrationName);
  } catch (error) {
    await database.close();
    rmSync(building, { recursive: true, force: true });
    throw error;
  }
  await database.close();
  rmSync(folder, { recursive: true, force: true });
  renameSync(building, folder);
  return applied;
}
