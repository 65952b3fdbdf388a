import { defineConfig } from 'vite';

/** The console is static files the server serves at `/`; hashed assets under /assets/ are cached for good. */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    rolldownOptions: {
      // React libraries mark modules "use client", which means nothing in a static bundle.
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
  oxc: { jsx: { runtime: 'automatic' } },
  // `pnpm --filter @hiatus/console dev`: the console reloading as its sources change, its API calls sent to a running server.
  server: { proxy: { '/trpc': process.env.HIATUS_URL ?? 'http://127.0.0.1:8080' } },
});
