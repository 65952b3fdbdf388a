import { copyFileSync, cpSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * In the built server, dist/pglite-seed/: a PGlite data folder initialised and migrated by the
 * build (cli/make-pglite-seed.ts, which `pnpm install` runs). Running from the sources there is
 * none (src/db/pglite-seed/ does not exist), and PGlite initialises a new folder itself.
 */
export const pgliteSeedFolder = path.join(here, 'pglite-seed');

/** The file PostgreSQL (and PGlite) take for "a database is here". */
const versionFile = 'PG_VERSION';

/**
 * Copies the seed into `dataDir` when the folder holds no database yet (no PG_VERSION) and the
 * seed exists; returns whether it did. A new folder then opens in a fraction of a second, where
 * PGlite's own initdb takes some 6 s, and the migrator has only migrations newer than the build
 * left to apply. PG_VERSION is copied last: a copy cut short leaves a folder without it, which the
 * next start copies over again. The seed holds the schema only: the admin key is made at start.
 */
export function plantPgliteSeed(dataDir: string, seed: string = pgliteSeedFolder): boolean {
  if (existsSync(path.join(dataDir, versionFile)) || !existsSync(path.join(seed, versionFile))) return false;
  cpSync(seed, dataDir, { recursive: true, filter: (from) => from !== path.join(seed, versionFile) });
  copyFileSync(path.join(seed, versionFile), path.join(dataDir, versionFile));
  return true;
}

/** Whether a seed is a tarball of a data folder (PGlite's `dumpDataDir('gzip')`) rather than a folder. */
export function isSeedTarball(seed: string): boolean {
  return seed.endsWith('.tar.gz');
}

/**
 * The seed tarball, for PGlite to load (its `loadDataDir`), when `dataDir` holds no database yet
 * and the tarball exists. The one kind of seed `memory://` takes: a folder's copy is quicker on
 * disk (PGlite writes a tarball's files one by one through its file system layer), but memory has
 * no folder to copy into. An initialised tarball spares each test database PGlite's initdb.
 */
export function pgliteSeedTarball(dataDir: string, seed: string): Blob | undefined {
  const inMemory = dataDir.startsWith('memory://');
  if ((!inMemory && existsSync(path.join(dataDir, versionFile))) || !existsSync(seed)) return undefined;
  return new Blob([readFileSync(seed)], { type: 'application/x-gzip' });
}
