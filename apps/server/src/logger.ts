import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Logs on stdout: readable lines when a person watches (stdout is a terminal), JSON objects one a
 * line otherwise, for log collectors and the tests. `pretty` forces either.
 */
export function createLogger(level: LogLevel, options: { pretty?: boolean } = {}): Logger {
  const base = { level, base: { service: 'hiatus' } };
  if (!(options.pretty ?? process.stdout.isTTY === true)) return pino(base);
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
