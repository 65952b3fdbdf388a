import { fileURLToPath } from 'node:url';
import { defineConfig } from 'tsdown';

// One self-contained file: the client's source and every dependency bundled in, no declarations.
export default defineConfig({
  entry: { hiatus: 'src/main.ts' },
  format: 'esm',
  platform: 'node',
  target: 'node20',
  dts: false,
  clean: true,
  alias: { '@hiatus/client': fileURLToPath(new URL('../client/src/index.ts', import.meta.url)) },
  deps: { alwaysBundle: [/.*/], onlyBundle: false },
  banner: { js: '#!/usr/bin/env node' },
});
