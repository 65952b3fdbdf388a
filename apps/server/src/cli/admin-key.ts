// `pnpm admin:key [--revoke-others]`: mints a fresh key for the admin "admin", with database
// access and the server's own configuration (DATABASE_URL, or the PGlite folder HIATUS_DATA_DIR).
// The key is printed once, in a box, on stdout; what happened is told on stderr.
import { parseArgs } from 'node:util';
import { adminKeyBox, mintAdminKey } from '../auth/admin-key.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { openDatabase, sessionDatabase } from '../db/connection.ts';
import { ensureDatabaseExists } from '../db/create-database.ts';
import { migrateToLatest } from '../db/migrate.ts';

const usage = 'usage: pnpm admin:key [--revoke-others]';

let revokeOthers: boolean;
let config: ReturnType<typeof loadConfig>;
try {
  const { values } = parseArgs({
    options: { 'revoke-others': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(
      `${usage}\nMints a new API key for the admin "admin"; --revoke-others revokes its other keys.\n`,
    );
    process.exit(0);
  }
  revokeOthers = values['revoke-others'] === true;
  config = loadConfig();
} catch (error) {
  const message = error instanceof ConfigError ? error.message : `${(error as Error).message}\n${usage}`;
  process.stderr.write(`hiatus: ${message}\n`);
  process.exit(2);
}

// A one-off tool: a direct connection when DATABASE_URL goes through PgBouncer.
const session = sessionDatabase(config.database);
if (session.kind === 'postgres') {
  const created = await ensureDatabaseExists(session.url);
  if (created) process.stderr.write(`hiatus: created the database "${created}": it did not exist\n`);
}
const database = openDatabase(session);
try {
  const applied = await migrateToLatest(database.db);
  if (applied.length) process.stderr.write(`hiatus: applied ${applied.length} migrations\n`);
  const minted = await mintAdminKey(database.db, { revokeOthers });
  process.stdout.write(adminKeyBox(minted.key));
  if (revokeOthers) process.stderr.write(`hiatus: revoked ${minted.revoked.length} other key(s) of "admin"\n`);
} catch (error) {
  process.stderr.write(`hiatus: could not mint an admin key: ${(error as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await database.close();
}
