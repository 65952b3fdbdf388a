import type { TRPCError } from '@trpc/server';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { toTRPCError } from './errors.ts';
import { appRouter } from './router.ts';

/**
 * An error as the router's own formatter shapes it (tRPC's `{ message, code, data }`, with the
 * request id and the input's issues), with its HTTP status: for answers made outside tRPC's
 * handler (a request refused before tRPC reads it, the REST front's problem details), so that
 * every front answers an error alike.
 */
export function formattedError(cause: unknown, requestId: string | null) {
  const error: TRPCError = toTRPCError(cause);
  const status = getHTTPStatusCodeFromError(error);
  const shape = appRouter._def._config.errorFormatter({
    error,
    type: 'unknown',
    path: undefined,
    input: undefined,
    ctx: requestId === null ? undefined : { requestId, principal: null, authError: null },
    shape: {
      message: error.message,
      code: TRPC_ERROR_CODES_BY_KEY[error.code],
      data: { code: error.code, httpStatus: status },
    },
  });
  return { error, status, shape };
}
