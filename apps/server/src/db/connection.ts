import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type Dialect, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { isSeedTarball, pgliteSeedTarball, plantPgliteSeed } from './pglite-seed.ts';
import type { DB as Database } from './schema.ts';

/**
 * Where the data lives: a PostgreSQL server, or the embedded PGlite in a folder (`memory://` for
 * tests). `directUrl`: the server itself when `url` goes through a transaction-mode pooler.
 * `seed`: what a new PGlite database starts as (see pglite-seed.ts): a data folder (copied), or a
 * `.tar.gz` of one (loaded by PGlite, the only kind `memory://` takes); null for none; by default
 * the build's seed folder.
 */
export type DatabaseConfig =
  | { kind: 'postgres'; url: string; poolSize: number; directUrl?: string }
  | { kind: 'pglite'; dataDir: string; seed?: string | null };

/**
 * The configuration for connections that keep their session (LISTEN, creating the database,
 * migrations, one-off tools): PostgreSQL itself (`directUrl`) when `url` goes through PgBouncer
 * in transaction mode, else the same.
 */
export function sessionDatabase(config: DatabaseConfig): DatabaseConfig {
  if (config.kind !== 'postgres' || !config.directUrl) return config;
  return { kind: 'postgres', url: config.directUrl, poolSize: Math.min(config.poolSize, 2) };
}

/** The database, or a transaction on it: a Transaction is a Kysely, so data functions serve both. */
export type Db = Kysely<Database>;

export type DatabaseHandle = {
  db: Db;
  /** Which backend, and where its data lives, in words for the start-up log. */
  description: { backend: 'postgres' | 'pglite'; location: string };
  /** A new PGlite folder was made a copy of the seed, schema included. */
  seeded: boolean;
  close(): Promise<void>;
};

/**
 * Opens the database the configuration names: PostgreSQL through a `pg` pool, or the embedded
 * PGlite persisted in a folder (`dataDir: 'memory://'` keeps it in memory, for tests).
 */
export function openDatabase(config: DatabaseConfig): DatabaseHandle {
  const { dialect, seeded } =
    config.kind === 'pglite' ? openPglite(config) : { dialect: createDialect(config), seeded: false };
  const db = new Kysely<Database>({ dialect });
  return { db, description: describeDatabase(config), seeded, close: () => db.destroy() };
}

/**
 * PGlite in its folder (made if missing). A database that does not exist yet starts from the
 * seed: its folder made a copy of the seed folder, or PGlite loading the seed tarball (`seeded`).
 * Without a seed, or on a folder that holds a database, PGlite opens the folder or runs its initdb.
 */
function openPglite({ dataDir, seed }: { dataDir: string; seed?: string | null }): {
  dialect: Dialect;
  seeded: boolean;
} {
  const inMemory = dataDir.startsWith('memory://');
  if (!inMemory) mkdirSync(dataDir, { recursive: true });
  if (seed !== null && seed !== undefined && isSeedTarball(seed)) {
    const tarball = pgliteSeedTarball(dataDir, seed);
    return { dialect: pgliteDialect(dataDir, tarball), seeded: tarball !== undefined };
  }
  const seeded = seed !== null && !inMemory && plantPgliteSeed(dataDir, seed);
  return { dialect: pgliteDialect(dataDir), seeded };
}

/** The Kysely dialect for a configuration; kysely-ctl uses it too, so both run on the same connection rules. */
export function createDialect(config: DatabaseConfig): Dialect {
  if (config.kind === 'postgres') {
    const pool = new pg.Pool({ connectionString: config.url, max: config.poolSize, connectionTimeoutMillis: 10_000 });
    // A connection's error (the server restarting, say) must not crash the process: the query in
    // flight fails with it, the pool drops the broken client, and the next query gets a fresh one.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    return new PostgresDialect({ pool });
  }
  return openPglite(config).dialect;
}

/**
 * PGlite's shared buffers, 128 MB by default: PGlite zeroes them all as it opens (half of its
 * open time) and they stay resident. At 16 MB a folder opens in some 0.6 s instead of 1.0 s and
 * the server's idle memory is ~110 MB less; the operating system still caches the data files.
 */
const pgliteSharedBuffers = '16MB';

/**
 * PGlite and its dialect are loaded for the embedded database only (their CommonJS builds, so that
 * opening stays synchronous): some 20 MiB of memory a server on PostgreSQL never needs.
 */
function pgliteDialect(dataDir: string, loadDataDir?: Blob): Dialect {
  const load = createRequire(import.meta.url);
  const { PGlite } = load('@electric-sql/pglite') as typeof import('@electric-sql/pglite');
  const { PGliteDialect } = load('kysely-pglite-dialect') as typeof import('kysely-pglite-dialect');
  const startParams = [...PGlite.defaultStartParams, '-c', `shared_buffers=${pgliteSharedBuffers}`];
  return new PGliteDialect(new PGlite(dataDir, { startParams, ...(loadDataDir ? { loadDataDir } : {}) }));
}

function describeDatabase(config: DatabaseConfig): DatabaseHandle['description'] {
  if (config.kind === 'pglite') return { backend: 'pglite', location: config.dataDir };
  const url = new URL(config.url);
  // Never log a password.
  return { backend: 'postgres', location: `${url.hostname}:${url.port || 5432}${url.pathname}` };
}

/** One round trip: throws when the database does not answer. */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`SELECT 1`.execute(db);
}

/** The database's clock: the one every process's timestamps in the database agree with. */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`SELECT NOW() AS now`.execute(db);
  return rows[0]!.now;
}
