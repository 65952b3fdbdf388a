import { createRequire } from 'node:module';
import pino from 'pino';

export type Logger = pino.Logger;
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Logs on stdout: readable lines when a person watches (stdout is a terminal), JSON objects one a
 * line otherwise, for log collectors and the tests. `pretty` forces either.
 */
export function createLogger(level: LogLevel, options: { pretty?: boolean } = {}): Logger {
  const base = { level, base: { service: 'hiatus' } };
  if (!(options.pretty ?? process.stdout.isTTY === true)) return pino(base);
  // Loaded only for a person's terminal: a server writing JSON never needs it (some 10 MiB).
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  // A synchronous prettifier in this thread: no worker, and nothing lost when the process exits.
  return pino(
    base,
    pretty({
      sync: true,
      colorize: true,
      singleLine: true,
      translateTime: 'SYS:HH:MM:ss',
      ignore: 'pid,hostname,service',
      // The JSON line says `listening` (log collectors and tests look for it); a person reads where.
      messageFormat: (entry, key) => (entry[key] === 'listening' ? `ready at ${entry.url}` : String(entry[key])),
    }),
  );
}
