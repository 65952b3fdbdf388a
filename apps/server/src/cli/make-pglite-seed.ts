// Run by the server's build (`pnpm install` builds it) after tsdown, as dist/make-pglite-seed.mjs:
// makes dist/pglite-seed/, the migrated PGlite folder a new data folder starts as. It costs the
// build one PGlite initdb and the migrations (some 6 s); every first start on PGlite saves as much.
// A seed that cannot be made fails neither the build nor the install (a server on PostgreSQL never
// needs it): new PGlite folders then run initdb at their first start, as without a seed.
import { makePgliteSeed } from '../db/make-pglite-seed.ts';
import { pgliteSeedFolder } from '../db/pglite-seed.ts';

const started = performance.now();
try {
  const applied = await makePgliteSeed(pgliteSeedFolder);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`hiatus: made the PGlite seed (${applied.length} migrations) in ${seconds} s\n`);
} catch (error) {
  process.stderr.write(
    `hiatus: could not make the PGlite seed (${(error as Error).message}): a new PGlite folder will run initdb at its first start\n`,
  );
}
