// kysely-ctl's configuration: `pnpm db:migrate` applies `migrations/` to DATABASE_URL (or to
// DATABASE_DIRECT_URL when that is set: DATABASE_URL then goes through PgBouncer), or to the
// embedded PGlite folder when it is unset, through the same dialect the server uses.
import { defineConfig } from 'kysely-ctl';
import { loadDatabaseConfig } from './apps/server/src/config.ts';
import { createDialect, sessionDatabase } from './apps/server/src/db/connection.ts';

export default defineConfig({
  dialect: createDialect(sessionDatabase(loadDatabaseConfig())),
  migrations: { migrationFolder: 'migrations' },
});
