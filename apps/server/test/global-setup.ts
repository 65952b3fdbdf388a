import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { repoRoot } from '../src/config.ts';
// The declaration of what this setup provides lives beside its readers.
import type {} from './databases.ts';

export const defaultTestDatabaseUrl = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * Looks for PostgreSQL once for the whole run. In CI an unreachable server fails the run;
 * elsewhere the run goes on with PGlite alone and says so.
 */
export default async function setup(project: TestProject): Promise<void> {
  const url = process.env.TEST_DATABASE_URL || defaultTestDatabaseUrl;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    project.provide('postgresUrl', url);
  } catch (error) {
    const why = `PostgreSQL is unreachable at ${url}: ${(error as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: PostgreSQL is required)`);
    process.stdout.write(`\n*** ${why}\n*** The tests run on PGlite only.\n\n`);
    project.provide('postgresUrl', null);
  } finally {
    await client.end().catch(() => undefined);
  }
  project.provide('pgliteSeed', await pgliteInitdbTarball().catch(() => null));
}

/**
 * An initialised, empty PGlite data folder as a tarball: each test's `memory://` database loads it
 * (some 1 s) instead of running PGlite's initdb (some 6 s). Made once per installed PGlite (its
 * folder under node_modules/.pnpm names its version and any patch) and kept in node_modules/.cache.
 * Null when it cannot be made: the databases then run initdb each.
 */
async function pgliteInitdbTarball(): Promise<string> {
  const load = createRequire(import.meta.url);
  const pgliteDir = realpathSync(path.resolve(path.dirname(load.resolve('@electric-sql/pglite')), '..'));
  const key = createHash('sha256').update(pgliteDir).digest('hex').slice(0, 16);
  const file = path.join(repoRoot, 'node_modules', '.cache', 'hiatus', `pglite-initdb-${key}.tar.gz`);
  if (existsSync(file)) return file;
  const { PGlite } = load('@electric-sql/pglite') as typeof import('@electric-sql/pglite');
  const pglite = await PGlite.create('memory://');
  try {
    await pglite.exec('CHECKPOINT');
    const tarball = await pglite.dumpDataDir('gzip');
    mkdirSync(path.dirname(file), { recursive: true });
    // Written beside it and renamed: runs starting together never read half a file.
    const partial = `${file}.${process.pid}`;
    writeFileSync(partial, Buffer.from(await tarball.arrayBuffer()));
    renameSync(partial, file);
    return file;
  } finally {
    await pglite.close();
  }
}
