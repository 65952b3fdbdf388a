import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, postgresServerUrl, type TestDatabase, testBackends } from '../../test/databases.ts';
import { repoRoot } from '../config.ts';
import { migrateToLatest, migrationFolder, pendingMigrations } from './migrate.ts';

const run = promisify(execFile);
const serverDir = path.join(repoRoot, 'apps/server');
let database: TestDatabase | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

describe.each(testBackends())('migrations on %s', (backend) => {
  it('apply every file in migrations/ once, and then none are pending', async () => {
    database = await createTestDatabase(backend);
    const db = database.open();
    const files = (await readdir(migrationFolder)).filter((f) => f.endsWith('.ts')).sort();
    expect(await pendingMigrations(db)).toEqual(files.map((f) => f.replace(/\.ts$/, '')));
    const applied = await migrateToLatest(db);
    expect(applied.map((r) => r.status)).toEqual(files.map(() => 'Success'));
    expect(await pendingMigrations(db)).toEqual([]);
    expect(await migrateToLatest(db)).toEqual([]);
  });
});

describe.runIf(postgresServerUrl())('migrations on a shared PostgreSQL', () => {
  it('are applied once when several servers start together', async () => {
    database = await createTestDatabase('postgres');
    const pools = [database.open(), database.open(), database.open(), database.open()];
    const results = await Promise.all(pools.map((db) => migrateToLatest(db)));
    const applied = results.flat().map((r) => r.migrationName);
    expect(new Set(applied).size).toBe(applied.length);
    const rows = await pools[0]!
      .selectFrom('kysely_migration' as never)
      .selectAll()
      .execute();
    expect(rows).toHaveLength(applied.length);
    expect(applied.length).toBeGreaterThanOrEqual(2);
  });

  it('run through `pnpm db:migrate` (kysely-ctl) and the server sees the schema as current', async () => {
    database = await createTestDatabase('postgres');
    if (database.config.kind !== 'postgres') throw new Error('unreachable');
    await run('pnpm', ['db:migrate'], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: database.config.url } });
    expect(await pendingMigrations(database.open())).toEqual([]);
  });

  it('leave the schema exactly as the Kysely Database types describe it (kysely-codegen --verify)', async () => {
    database = await createTestDatabase('postgres');
    if (database.config.kind !== 'postgres') throw new Error('unreachable');
    await migrateToLatest(database.open());
    const verify = run(
      path.join(serverDir, 'node_modules/.bin/kysely-codegen'),
      ['--verify', '--url', database.config.url],
      {
        cwd: serverDir,
      },
    );
    await expect(verify).resolves.toBeDefined();
  });
});
