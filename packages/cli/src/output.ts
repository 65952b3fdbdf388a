/** Human output: aligned tables, key-value blocks, dates and durations as people read them; JSON for scripts. */
import type { Command } from 'commander';

/** Whether the command line asked for JSON: `--json` is the program's, given anywhere on the line. */
export function wantsJson(command: Command): boolean {
  return command.optsWithGlobals<{ json?: boolean }>().json === true;
}

/** A cell: what to show, with null, undefined and empty shown as "-". */
type Cell = string | number | null | undefined;

/** Columns aligned with two spaces between them; the last column is not padded. */
export function table(headers: string[], rows: Cell[][]): string {
  const cells = [headers, ...rows.map((row) => row.map(show))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `key  value` lines with the values aligned, for one object. */
export function details(pairs: [string, Cell][]): string {
  const width = Math.max(...pairs.map(([key]) => key.length));
  return pairs.map(([key, value]) => `${key.padEnd(width)}  ${show(value)}`).join('\n');
}

function show(cell: Cell): string {
  if (cell === null || cell === undefined || cell === '') return '-';
  return String(cell).replace(/\s+/g, ' ');
}

/** A moment in UTC to the second: `2026-11-25 21:30:05Z`. */
export function formatTime(date: Date | string | null | undefined): string | null {
  if (date === null || date === undefined) return null;
  return new Date(date)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d{3}Z$/, 'Z');
}

/** Seconds as the largest whole units: `90` → `1m30s`, `3600` → `1h`. */
export function formatSeconds(seconds: number): string {
  const parts: string[] = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`);
  return parts.join('');
}

/** How long ago `date` was, roughly: `5m ago`. */
export function ago(date: Date | string, now = Date.now()): string {
  return `${formatSeconds(Math.max(0, (now - new Date(date).getTime()) / 1000)).replace(/^(\d+[a-z]+).*$/, '$1')} ago`;
}

/** Bytes for people: `1.2 kB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

/** Writes one line to stdout. */
export function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Writes a value as JSON (dates as ISO strings): pretty for a whole answer, one line for a stream. */
export function sayJson(value: unknown, options: { line?: boolean } = {}): void {
  process.stdout.write(`${options.line ? JSON.stringify(value) : JSON.stringify(value, null, 2)}\n`);
}

/** A remark for the person at the terminal (paging hints, warnings): stderr, so stdout stays data. */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}
