import type { AppRouter } from '@hiatus/server/router';
import { retryLink, type TRPCClientError, type TRPCLink } from '@trpc/client';

/** How the client tries a call again: at most `maxRetries` more times (0: never). */
export type RetryOptions = { maxRetries: number };

/** The first wait when the answer names none; doubled at each try, up to `maxDelayMs`. */
const baseDelayMs = 250;
const maxDelayMs = 10_000;
/** A `Retry-After` longer than this is the caller's to wait for (a rate of a few calls an hour): no retry. */
const maxRetryAfterMs = 30_000;

/**
 * Tries again what can be tried again safely: a query (it changes nothing) refused with 429 or 503
 * or lost to the network, and a mutation only when the server cannot have acted on it: refused with
 * 429 (every 429 of Hiatus's is a refusal that changed nothing: a limit, a full inbox) or never sent
 * (the connection was refused). A mutation answered 503, or whose connection broke after it was
 * sent, may have been done: it is never sent twice. Waits as `Retry-After` says (one past 30 s is
 * left to the caller), else backs off.
 */
export function retries(options: RetryOptions): TRPCLink<AppRouter> {
  // tRPC asks `retry` and then, at once and for the same failure, `retryDelayMs`, which is not given
  // the error: the wait the failure asked for is handed from one to the other here.
  let asked: number | null = null;
  return retryLink<AppRouter>({
    retry: ({ op, error, attempts }) => {
      // A call its caller gave up on (its signal aborted) is over, whatever the failure looks like.
      if (attempts > options.maxRetries || op.type === 'subscription' || op.signal?.aborted) return false;
      const status = statusOf(error);
      const again =
        op.type === 'query'
          ? status === 429 || status === 503 || status === null
          : status === 429 || (status === null && connectionRefused(error));
      asked = again ? retryAfterMs(error) : null;
      return again && (asked ?? 0) <= maxRetryAfterMs;
    },
    retryDelayMs: (attempt) => asked ?? jitter(Math.min(baseDelayMs * 2 ** (attempt - 1), maxDelayMs)),
  });
}

/** The HTTP status of the answer, or null when none came (the network failed). */
function statusOf(error: TRPCClientError<AppRouter>): number | null {
  const response = (error.meta as { response?: Response } | undefined)?.response;
  return error.data?.httpStatus ?? response?.status ?? null;
}

function retryAfterMs(error: TRPCClientError<AppRouter>): number | null {
  const header = (error.meta as { response?: Response } | undefined)?.response?.headers.get('retry-after');
  const seconds = header ? Number(header) : Number.NaN;
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

/** Whether the call never reached the server: its connection was refused. */
function connectionRefused(error: TRPCClientError<AppRouter>): boolean {
  for (let cause: unknown = error.cause; cause; cause = (cause as { cause?: unknown }).cause) {
    if ((cause as { code?: unknown }).code === 'ECONNREFUSED') return true;
  }
  return false;
}

/** Between half and all of `ms`, so clients refused together do not come back together. */
function jitter(ms: number): number {
  return ms / 2 + Math.random() * (ms / 2);
}
