import { setTimeout as sleep } from 'node:timers/promises';
import { defaults } from './defaults.ts';

/**
 * Capped exponential backoff with jitter: `retryMinMs`, then about twice as long each time, never
 * more than `retryMaxMs`. Several daemons that lost the server together do not come back in step.
 */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly minMs: number = defaults.retryMinMs,
    private readonly maxMs: number = defaults.retryMaxMs,
  ) {}

  /** The wait before the next try. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.failures, 30));
    this.failures += 1;
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  reset(): void {
    this.failures = 0;
  }
}

/** Waits `ms`; resolves false at once when `signal` aborts (and true after a full wait). */
export async function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false;
  return sleep(ms, true, { signal }).catch(() => false);
}

/** Raised by `retrying` when its `until` signal aborted before the call succeeded. */
export class GaveUp extends Error {
  override readonly name = 'GaveUp';
}

/**
 * Calls `call` until it succeeds, waiting with `Backoff` between tries. An error that
 * `retryable` refuses is thrown as is; `onRetry` hears of the others (to log them). When `until`
 * aborts, the next wait ends at once and `GaveUp` is thrown, with the last error as its cause.
 */
export async function retrying<T>(
  call: () => Promise<T>,
  options: {
    retryable: (error: unknown) => boolean;
    onRetry: (error: unknown, waitMs: number) => void;
    until?: AbortSignal;
  },
): Promise<T> {
  const backoff = new Backoff();
  for (;;) {
    let failure: unknown;
    try {
      return await call();
    } catch (error) {
      if (!options.retryable(error)) throw error;
      failure = error;
    }
    const waitMs = backoff.next();
    if (!options.until?.aborted) options.onRetry(failure, waitMs);
    if (!(await pause(waitMs, options.until))) throw new GaveUp('gave up retrying', { cause: failure });
  }
}
