export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Structured log lines: a message and fields; `child` binds fields to every line it writes. */
export type Logger = {
  [level in LogLevel]: (msg: string, fields?: object) => void;
} & { child(fields: object): Logger };

/**
 * One JSON object per line, `{time, level, msg, ...fields}`, to `write` (stdout by default):
 * what log collectors read without a library. Fields cannot overwrite `time`, `level` or `msg`.
 */
export function jsonLogger(write: (line: string) => void = (line) => process.stdout.write(line), bound = {}): Logger {
  const line = (level: LogLevel) => (msg: string, fields?: object) => {
    const entry = { time: new Date().toISOString(), level, msg };
    write(`${JSON.stringify({ ...entry, ...bound, ...fields, ...entry })}\n`);
  };
  return {
    debug: line('debug'),
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    child: (fields) => jsonLogger(write, { ...bound, ...fields }),
  };
}
