import pg from 'pg';
import type { TestProject } from 'vitest/node';
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
}
