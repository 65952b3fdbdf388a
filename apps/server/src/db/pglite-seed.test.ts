import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Migrator, sql } from 'kysely';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { testProvisionerDir } from '../../test/paths.ts';
import { loadConfig } from '../config.ts';
import { startServer } from '../server.ts';
import { type DatabaseConfig, openDatabase } from './connection.ts';
import { makePgliteSeed } from './make-pglite-seed.ts';
import { folderProvider, migrateToLatest, migrationFolder, pendingMigrations } from './migrate.ts';
import { plantPgliteSeed } from './pglite-seed.ts';

// A new PGlite folder starts as a copy of the seed the build makes (dist/pglite-seed/), not
// through PGlite's initdb; these tests make a seed of their own from the sources.

let scratch: string;
let seed: string;
let names: string[];
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'hiatus-seed-'));
  seed = path.join(scratch, 'seed');
  const files = (await readdir(migrationFolder)).filter((f) => /^\d{4}_.+\.ts$/.test(f)).sort();
  names = files.map((f) => f.replace(/\.ts$/, ''));
  expect(await makePgliteSeed(seed)).toEqual(names);
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** Runs `use` on the PGlite database in `dataDir` (seeded from `seed`), then closes it. */
async function withFolder<T>(
  config: Omit<Extract<DatabaseConfig, { kind: 'pglite' }>, 'kind'>,
  use: (database: ReturnType<typeof openDatabase>) => Promise<T>,
): Promise<T> {
  const database = openDatabase({ kind: 'pglite', ...config });
  try {
    return await use(database);
  } finally {
    await database.close();
  }
}

const count = async (db: ReturnType<typeof openDatabase>['db'], table: string) =>
  Number((await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(db)).rows[0]!.n);

describe('a PGlite seed', () => {
  it('starts a new folder with the latest schema and the migration table, and no user or key', async () => {
    const dataDir = path.join(scratch, 'fresh');
    await withFolder({ dataDir, seed }, async (database) => {
      expect(database.seeded).toBe(true);
      expect(await pendingMigrations(database.db)).toEqual([]);
      expect(await count(database.db, 'kysely_migration')).toBe(names.length);
      // The latest migration's column is there (0013: when each agent is next asked).
      await sql`SELECT agent_check_due_at FROM tasks`.execute(database.db);
      expect(await count(database.db, 'users')).toBe(0);
      expect(await count(database.db, 'api_keys')).toBe(0);
      expect(await migrateToLatest(database.db)).toEqual([]);
    });
    expect(existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
  });

  it('leaves a folder that holds a database as it is', async () => {
    const dataDir = path.join(scratch, 'kept');
    await withFolder({ dataDir, seed }, (database) =>
      sql`INSERT INTO users (username, role) VALUES ('kept', 'member')`.execute(database.db),
    );
    await withFolder({ dataDir, seed }, async (database) => {
      expect(database.seeded).toBe(false);
      expect(await count(database.db, 'users')).toBe(1);
    });
  });

  it('copies itself again over a copy cut short (no PG_VERSION yet)', async () => {
    const dataDir = path.join(scratch, 'cut-short');
    await mkdir(path.join(dataDir, 'base'), { recursive: true });
    await writeFile(path.join(dataDir, 'postgresql.conf'), '# half a copy\n');
    expect(plantPgliteSeed(dataDir, seed)).toBe(true);
    expect(plantPgliteSeed(dataDir, seed)).toBe(false);
    await withFolder({ dataDir, seed }, async (database) => {
      expect(await pendingMigrations(database.db)).toEqual([]);
    });
  });

  it('made before the newest migration: a server starting on a new folder applies only the newer one', async () => {
    // A seed one migration behind the sources, as a build is once a migration lands after it.
    const older = path.join(scratch, 'older-seed');
    await cp(seed, older, { recursive: true });
    await withFolder({ dataDir: older, seed: null }, async (database) => {
      const migrator = new Migrator({ db: database.db, provider: folderProvider });
      expect((await migrator.migrateDown()).error).toBeUndefined();
    });
    const lines: Array<{ msg: string }> = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const dataDir = path.join(scratch, 'behind');
    const env = {
      PORT: '0',
      HIATUS_ADMIN_TOKEN: randomBytes(24).toString('hex'),
      HIATUS_PROVISIONER_DIR: testProvisionerDir,
    };
    const config = { ...loadConfig(env), database: { kind: 'pglite' as const, dataDir, seed: older } };
    const server = await startServer(config, log);
    try {
      const messages = lines.map((line) => line.msg);
      expect(messages).toContain('a new database: started as a copy of the seed, without initdb');
      expect(messages.filter((m) => m.startsWith('migrating '))).toEqual([`migrating 1 of 1: ${names.at(-1)}`]);
      expect(await pendingMigrations(server.database.db)).toEqual([]);
      expect(await count(server.database.db, 'users')).toBe(1); // the admin, made at start
    } finally {
      await server.stop();
    }
  });
});

describe('without a seed', () => {
  it('a new folder is initialised by PGlite, and migrated from the first migration', async () => {
    const dataDir = path.join(scratch, 'unseeded');
    await withFolder({ dataDir, seed: path.join(scratch, 'no-such-seed') }, async (database) => {
      expect(database.seeded).toBe(false);
      expect(await pendingMigrations(database.db)).toEqual(names);
      expect(await migrateToLatest(database.db)).toHaveLength(names.length);
    });
  });

  it('memory:// takes no seed folder: it starts empty', async () => {
    await withFolder({ dataDir: 'memory://', seed }, async (database) => {
      expect(database.seeded).toBe(false);
      expect(await pendingMigrations(database.db)).toEqual(names);
    });
  });
});

describe.runIf(inject('pgliteSeed'))('a seed tarball', () => {
  it('starts memory:// as the folder it holds (the tests: initialised, no migration)', async () => {
    await withFolder({ dataDir: 'memory://', seed: inject('pgliteSeed') }, async (database) => {
      expect(database.seeded).toBe(true);
      expect(await pendingMigrations(database.db)).toEqual(names);
      expect(await migrateToLatest(database.db)).toHaveLength(names.length);
    });
  });
});
