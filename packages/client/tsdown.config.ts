import { defineConfig } from 'tsdown';

// ESM with declarations that carry the server's router types inside them (@hiatus/server is a
// devDependency, so it is bundled): the published package imports nothing from this workspace.
export default defineConfig({
  entry: ['src/index.ts'],
  format: 'esm',
  platform: 'node',
  target: 'node20',
  dts: { eager: true },
  clean: true,
});
