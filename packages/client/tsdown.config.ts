import { defineConfig } from 'tsdown';

// In this workspace the package's `exports` name its source (the console, the provisioner and the tests
// run it as it is); `publishConfig` swaps in this build's dist/ when the package is packed.
//
// ESM with declarations that carry the server's router types inside them (@hiatus/server is a
// devDependency, so it is bundled): the published package imports nothing from this workspace.
//
// `pnpm build` first emits the server's declarations once, unchecked (`pnpm typecheck` checks), with
// `tsc -p apps/server/tsconfig.declarations.json` into apps/server/node_modules/.cache/declarations;
// tsconfig.declarations.json points `@hiatus/server/*` there. This build then writes the client's own
// declarations with Oxc (its exports carry explicit types: isolated declarations) and bundles them with
// the server's. Generating the server's from its sources here instead made tsdown load the server's
// whole JavaScript graph, PGlite included: a minute or two and 3 to 7 GB.
export default defineConfig({
  entry: ['src/index.ts'],
  format: 'esm',
  platform: 'node',
  target: 'node20',
  dts: { oxc: true, tsconfig: 'tsconfig.declarations.json' },
  // The server's declarations import these, but no type of the API is made of them. Left out, their
  // global and module augmentations (undici's of 'node:buffer', kysely's of the globals) stay out of a
  // consumer's program, and zod's declarations are not walked (bundled, they break a consumer's
  // type-check: the bundler joins their `@ts-ignore` comments to the line after). Should an API type
  // ever need one, the output imports it and the pack test's consumer type-check fails: none is a
  // dependency of this package.
  deps: { neverBundle: ['undici', 'kysely', 'zod', 'pino'] },
  clean: true,
});
