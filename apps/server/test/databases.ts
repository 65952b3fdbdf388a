import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { DatabaseConfig } from '../src/db/connection.ts';
import { type Db, openDatabase } from '../src/db/connection.ts';
import { migrateToLatest } from '../src/db/migrate.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The PostgreSQL server tests create their databases on, or null when only PGlite runs. */
    postgresUrl: string | null;
    /**
     * PgBouncer in transaction mode in front of that server (the `pgbouncer` project): PostgreSQL
     * databases are then reached through it, and only PostgreSQL is tested.
     */
    pgbouncerUrl?: string | null;
    /** An initialised, empty PGlite data folder as a tarball (see global-setup.ts), or null. */
    pgliteSeed: string | null;
  }
}

export type BackendName = 'postgres' | 'pglite';

/** A fresh, empty database of its own for one test file. */
export type TestDatabase = {
  backend: BackendName;
  config: DatabaseConfig;
  /** Opens a connection (a pool, for PostgreSQL) to the database; closed by drop(). */
  open(): Db;
  drop(): Promise<void>;
};

/** The backends this run tests on: PostgreSQL when the global setup found it, and always PGlite. */
export function testBackends(): BackendName[] {
  if (inject('pgbouncerUrl')) return ['postgres'];
  return inject('postgresUrl') ? ['postgres', 'pglite'] : ['pglite'];
}

/** The PostgreSQL server URL for tests that need PostgreSQL itself, or null. */
export function postgresServerUrl(): string | null {
  return inject('postgresUrl');
}

/** Creates an empty database on the backend; the caller migrates it (or not). */
export async function createTestDatabase(backend: BackendName): Promise<TestDatabase> {
  const handles: Array<{ close(): Promise<void> }> = [];
  const closeAll = () => Promise.all(handles.map((h) => h.close().catch(() => undefined)));

  if (backend === 'pglite') {
    // One PGlite instance is one database: every open() shares it. It starts from the initialised
    // empty folder the global setup made, without an initdb of its own.
    const config: DatabaseConfig = { kind: 'pglite', dataDir: 'memory://', seed: inject('pgliteSeed') };
    const handle = openDatabase(config);
    handles.push(handle);
    return { backend, config, open: () => handle.db, drop: async () => void (await closeAll()) };
  }

  const serverUrl = inject('postgresUrl');
  if (!serverUrl) throw new Error('PostgreSQL is not available in this run');
  const name = `hiatus_test_${randomBytes(6).toString('hex')}`;
  await withAdmin(serverUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const bouncer = inject('pgbouncerUrl');
  const config: DatabaseConfig = bouncer
    ? { kind: 'postgres', url: databaseAt(bouncer, name), directUrl: url.toString(), poolSize: 10 }
    : { kind: 'postgres', url: url.toString(), poolSize: 10 };
  return {
    backend,
    config,
    open: () => {
      const handle = openDatabase(config);
      handles.push(handle);
      return handle.db;
    },
    drop: async () => {
      await closeAll();
      await withAdmin(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** A fresh database with every migration applied, and one open connection to it. */
export async function createMigratedDatabase(backend: BackendName): Promise<TestDatabase & { db: Db }> {
  const database = await createTestDatabase(backend);
  const db = database.open();
  await migrateToLatest(db);
  return { ...database, db };
}

/** DATABASE_URL (and DATABASE_DIRECT_URL, through PgBouncer) for a server process on `database`. */
export function databaseEnv(database: TestDatabase): Record<string, string> {
  const { config } = database;
  if (config.kind !== 'postgres') throw new Error('a server process needs a PostgreSQL test database');
  return { DATABASE_URL: config.url, ...(config.directUrl ? { DATABASE_DIRECT_URL: config.directUrl } : {}) };
}

function databaseAt(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}
