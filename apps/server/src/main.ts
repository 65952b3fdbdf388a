import { sourceNewerThanBuild } from './build-freshness.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { type RunningServer, startServer } from './server.ts';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`hiatus: ${error.message}\n`);
  process.exit(2);
}

const log = createLogger(config.logLevel);
// Looked for while the server starts (the database opening meanwhile), not before; a look that
// fails (a file gone mid-walk) only costs the warning.
void sourceNewerThanBuild(import.meta.url).then(
  (changed) => {
    if (!changed) return;
    log.warn(
      { changed },
      `${changed} changed after this server was built: \`pnpm install\` builds it again (\`pnpm dev\` runs the sources)`,
    );
  },
  () => undefined,
);
// Ctrl-C (SIGINT) and SIGTERM stop the server gracefully, and a clean stop exits 0, quietly. A
// signal during start-up waits for the start to finish (a migration is never cut short), then stops.
// Signals after the first are let go: under `pnpm start`, Ctrl-C reaches the server twice (from the
// terminal, and again from pnpm), and the second must not cut the shutdown short.
let server: RunningServer | undefined;
let stopRequested = false;
const stop = (running: RunningServer) =>
  running.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopRequested) return;
    log.info({ signal }, 'shutting down');
    stopRequested = true;
    if (server) void stop(server);
  });
}
try {
  server = await startServer(config, log);
  if (stopRequested) void stop(server);
} catch (error) {
  log.fatal({ err: error }, 'could not start');
  process.exit(1);
}
