import { InvalidArgumentError } from 'commander';

/** A parser for a whole number within bounds, for commander options. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || number < min || number > max) {
      throw new InvalidArgumentError(`a whole number from ${min} to ${max}`);
    }
    return number;
  };
}

/** A parser for a date or time (`2026-11-25`, `2026-11-25T21:00:00Z`). */
export function date(value: string): Date {
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) throw new InvalidArgumentError('a date such as 2026-11-25 or 2026-11-25T21:00Z');
  return parsed;
}

/** Collects repeated `--param name=value` into one object. */
export function parameter(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('name=value');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** A parser for one of a fixed list of words. */
export function oneOf<T extends string>(words: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(words as readonly string[]).includes(value)) throw new InvalidArgumentError(`one of ${words.join(', ')}`);
    return value as T;
  };
}
