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
      onwarn(warning, warn) {
        // React libraries mark modules "use client", which means nothing in a static bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        // The SDK's verifyWebhook (node:crypto) is imported with its links and left out of the bundle.
        if (/"node:crypto" has been externalized.*\/packages\/client\/src\/webhooks\.ts/.test(warning.message)) return;
        warn(warning);
      },
    },
  },
  // The SDK's links (packages/client) run on the console's @trpc/client, the version its
  // @trpc/tanstack-react-query is pinned to: one copy in the bundle, so that the errors the links make
  // are the TRPCClientError the console checks for.
  resolve: { dedupe: ['@trpc/client'] },
  oxc: { jsx: { runtime: 'automatic' } },
  // `pnpm --filter @hiatus/console dev`: the console reloading as its sources change, its API calls sent to a running server.
  server: { proxy: { '/trpc': process.env.HIATUS_URL ?? 'http://127.0.0.1:8080' } },
});
