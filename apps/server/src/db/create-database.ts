import pg from 'pg';

/** PostgreSQL's SQLSTATE for "database does not exist". */
const invalidCatalogName = '3D000';
/** PostgreSQL's SQLSTATE for "database already exists" (another process created it first). */
const duplicateDatabase = '42P04';

/**
 * Makes sure the database a PostgreSQL URL names exists: when connecting says it does not,
 * connects to the server's `postgres` maintenance database with the same credentials and creates
 * it. Returns the name of the database it created, or null when there was nothing to do.
 */
export async function ensureDatabaseExists(url: string): Promise<string | null> {
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await probe.connect();
    return null;
  } catch (error) {
    if ((error as { code?: string }).code !== invalidCatalogName) throw error;
  } finally {
    await probe.end().catch(() => undefined);
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  const maintenance = new URL(url);
  maintenance.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: maintenance.toString(), connectionTimeoutMillis: 10_000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
    return name;
  } catch (error) {
    if ((error as { code?: string }).code === duplicateDatabase) return null;
    throw error;
  } finally {
    await admin.end().catch(() => undefined);
  }
}
