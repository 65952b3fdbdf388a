import { TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { HiatusError, type HiatusErrorCode } from '../domain/errors.ts';

/** The one mapping from the domain's error codes to the API's. */
const codeFor = {
  not_found: 'NOT_FOUND',
  conflict: 'CONFLICT',
  // The agent is a precondition of the operation: it must be up and speak AgentAPI.
  agent_unreachable: 'PRECONDITION_FAILED',
  agent_bad_response: 'PRECONDITION_FAILED',
  too_large: 'PAYLOAD_TOO_LARGE',
  // A stored snapshot this version cannot read: the request is fine, the data is not servable.
  unknown_snapshot_format: 'UNPROCESSABLE_CONTENT',
  forbidden: 'FORBIDDEN',
  timeout: 'TIMEOUT',
  bad_input: 'BAD_REQUEST',
  unauthorized: 'UNAUTHORIZED',
  rate_limited: 'TOO_MANY_REQUESTS',
  busy: 'SERVICE_UNAVAILABLE',
} as const satisfies Record<HiatusErrorCode, TRPC_ERROR_CODE_KEY>;

/**
 * Every code an API error carries: the domain's, through `codeFor`, and the service's own (the
 * database away, anything unexpected). The SDK's `HiatusErrorCode` is this type, not a copy.
 */
export type ApiErrorCode = (typeof codeFor)[HiatusErrorCode] | 'SERVICE_UNAVAILABLE' | 'INTERNAL_SERVER_ERROR';

/** Turns what the domain or the database threw into an API error; anything unknown stays a 500. */
export function toTRPCError(error: unknown): TRPCError {
  if (error instanceof TRPCError) return error;
  if (error instanceof HiatusError) {
    return new TRPCError({ code: codeFor[error.code], message: error.message, cause: error });
  }
  if (isDatabaseUnavailable(error)) {
    return new TRPCError({
      code: 'SERVICE_UNAVAILABLE',
      message: 'the database is unavailable; try again shortly',
      cause: error as Error,
    });
  }
  return new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'internal error', cause: error as Error });
}

/**
 * A subscription's items, its failure mapped as a query's is. A subscription's generator runs after
 * its procedure's middleware has returned, so what it throws would otherwise reach the caller as a
 * 500 instead of NOT_FOUND, UNAUTHORIZED and the like.
 */
export async function* withApiErrors<T>(items: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* items;
  } catch (error) {
    throw toTRPCError(error);
  }
}

/** A connection problem (refused, dropped, server shutting down), not a fault of the request. */
function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (typeof e?.code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(e.code)) return true;
  // PostgreSQL's classes 08 (connection exception) and 57P (operator intervention: shutdown).
  if (typeof e?.code === 'string' && /^(08|57P)/.test(e.code)) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    e?.message ?? '',
  );
}
