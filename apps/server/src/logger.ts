import pino from 'pino';
import type { Config } from './config.ts';

export type Logger = pino.Logger;

/** Structured JSON logs on stdout, one object a line. */
export function createLogger(level: Config['logLevel']): Logger {
  return pino({ level, base: { service: 'hiatus' } });
}
