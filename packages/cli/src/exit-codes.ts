import { type HiatusErrorCode, hiatusErrorCode, isHiatusError } from '@hiatus/client';
import { CommanderError } from 'commander';

/** What went wrong, in the words of the exit codes: one kind, one code. */
export type FailureKind =
  | 'unexpected'
  | 'usage'
  | 'not_found'
  | 'conflict'
  | 'unauthorized'
  | 'unreachable'
  | 'rate_limited'
  | 'agent_unavailable';

/** The exit status of each kind: the README's table is this one. */
export const exitCodes: Readonly<Record<FailureKind, number>> = Object.freeze({
  unexpected: 1,
  usage: 2,
  not_found: 3,
  conflict: 4,
  unauthorized: 5,
  unreachable: 6,
  rate_limited: 7,
  agent_unavailable: 8,
});

/** The kind of each of the server's error codes; a code this CLI does not know yet is `unexpected`. */
const kindByCode: Readonly<Record<HiatusErrorCode, FailureKind>> = Object.freeze({
  BAD_REQUEST: 'usage',
  PAYLOAD_TOO_LARGE: 'usage',
  UNPROCESSABLE_CONTENT: 'unexpected',
  NOT_FOUND: 'not_found',
  CONFLICT: 'conflict',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'unauthorized',
  SERVICE_UNAVAILABLE: 'unreachable',
  TIMEOUT: 'unreachable',
  TOO_MANY_REQUESTS: 'rate_limited',
  PRECONDITION_FAILED: 'agent_unavailable',
  INTERNAL_SERVER_ERROR: 'unexpected',
});

/** A failure the CLI itself detects (bad flag value, not logged in), with its kind. */
export class CliError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** How a failure is reported: one line for people, one object for scripts, and the exit status. */
export type Failure = { kind: FailureKind; exitCode: number; code: string | null; message: string };

/** Turns whatever a command threw into a failure to report; `url` names the server in network errors. */
export function describeFailure(error: unknown, url?: string): Failure {
  const failure = (kind: FailureKind, message: string, code: string | null = null): Failure => ({
    kind,
    exitCode: exitCodes[kind],
    code,
    message,
  });
  if (error instanceof CliError) return failure(error.kind, error.message);
  if (error instanceof CommanderError) return failure('usage', error.message.replace(/^error: /, ''));
  if (isHiatusError(error)) {
    const code = hiatusErrorCode(error);
    if (code === null) {
      // No tRPC error body: the request never reached a Hiatus server (or something else answered).
      const where = url ? ` at ${url}` : '';
      const cause = networkCause(error);
      return cause
        ? failure('unreachable', `cannot reach the server${where} (${cause})`)
        : failure('unreachable', `no Hiatus server answers${where} (${error.message})`);
    }
    const kind = kindByCode[code] ?? 'unexpected';
    return failure(kind, explain(error, code), code);
  }
  return failure('unexpected', error instanceof Error ? error.message : String(error));
}

/** The server's message, with what BAD_REQUEST found wrong and when TOO_MANY_REQUESTS may be retried. */
function explain(error: { message: string; data?: unknown; meta?: Record<string, unknown> }, code: string): string {
  const data = error.data as { zodIssues?: { path?: (string | number)[]; message: string }[] } | undefined;
  if (code === 'BAD_REQUEST' && data?.zodIssues?.length) {
    return data.zodIssues
      .map((issue) => (issue.path?.length ? `${issue.path.join('.')}: ` : '') + issue.message)
      .join('; ');
  }
  if (code === 'TOO_MANY_REQUESTS') {
    const response = error.meta?.response as Response | undefined;
    const retryAfter = response?.headers?.get?.('retry-after');
    if (retryAfter) return `${error.message} (retry after ${retryAfter} s)`;
  }
  return error.message;
}

/**
 * What failed under a failed fetch (`connect ECONNREFUSED 127.0.0.1:8080`, `bad port`), or null when
 * the request did reach something.
 */
function networkCause(error: Error): string | null {
  const chain: Error[] = [];
  for (let cause: unknown = error.cause; cause instanceof Error && chain.length < 6; cause = cause.cause)
    chain.push(cause);
  if (
    !chain.some((cause) => cause.message === 'fetch failed' || typeof (cause as { code?: unknown }).code === 'string')
  ) {
    return null;
  }
  const deepest = chain.at(-1)!;
  return deepest.message || String((deepest as { code?: unknown }).code);
}
