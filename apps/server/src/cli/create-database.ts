// Run by `pnpm db:migrate` before kysely-ctl: with DATABASE_URL set, creates the database it
// names when it does not exist yet (through the server's `postgres` maintenance database).
import { ConfigError, loadDatabaseConfig } from '../config.ts';
import { sessionDatabase } from '../db/connection.ts';
import { ensureDatabaseExists } from '../db/create-database.ts';

try {
  const database = sessionDatabase(loadDatabaseConfig());
  if (database.kind === 'postgres') {
    const created = await ensureDatabaseExists(database.url);
    if (created) process.stderr.write(`hiatus: created the database "${created}": it did not exist\n`);
  }
} catch (error) {
  process.stderr.write(`hiatus: ${error instanceof ConfigError ? error.message : (error as Error).message}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
}
