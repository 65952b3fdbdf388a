import { readdirSync } from 'node:fs';
import { defineConfig } from 'tsdown';

// `pnpm start` runs this build (dist/main.mjs), not the sources through tsx: no TypeScript
// transform at start, no loader in memory. The migrations are built beside it (dist/migrations/),
// where db/migrate.ts looks for them in the built server. Dependencies stay in node_modules; the
// workspace's provisioner, whose package exports TypeScript sources, is bundled. The build script
// then runs dist/make-pglite-seed.mjs, which makes dist/pglite-seed/ (see db/pglite-seed.ts).
const migrations = Object.fromEntries(
  readdirSync('../../migrations')
    .filter((file) => /^\d{4}_.+\.ts$/.test(file))
    .map((file) => [`migrations/${file.replace(/\.ts$/, '')}`, `../../migrations/${file}`]),
);

export default defineConfig({
  entry: { main: 'src/main.ts', 'make-pglite-seed': 'src/cli/make-pglite-seed.ts', ...migrations },
  format: 'esm',
  platform: 'node',
  target: 'node20',
  dts: false,
  clean: true,
  noExternal: ['@hiatus/provisioner'],
  // What the provisioner brings along is bundled with it: prefer a package's ES module build (its
  // CommonJS/UMD one may require files at run time, which a bundle does not have: jsonc-parser's).
  inputOptions: { resolve: { mainFields: ['module', 'main'] } },
  sourcemap: true,
});
