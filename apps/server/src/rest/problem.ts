import http from 'node:http';
import type { TRPCError } from '@trpc/server';
import { HiatusError } from '../domain/errors.ts';
import { formattedError } from '../trpc/error-shape.ts';

export const problemContentType = 'application/problem+json';

/** One input problem, as /trpc's `data.zodIssues` has it. */
export type ProblemIssue = { path: string[]; message: string; code: string };

/**
 * An error as RFC 9457 problem details, with Hiatus's own members: `code` is the API code /trpc
 * answers in `data.code` (CONFLICT, NOT_FOUND, ...), `requestId` the one in `x-request-id` and the
 * logs, `issues` the input's problems (a bad input only).
 */
export type Problem = {
  /** No problem type beyond the status and `code`: RFC 9457's `about:blank`. */
  type: 'about:blank';
  /** The status's reason phrase, as `about:blank` asks. */
  title: string;
  status: number;
  /** What went wrong, in the words /trpc answers as `message`. */
  detail: string;
  /** The request's path. */
  instance: string;
  code: string;
  requestId: string | null;
  issues?: ProblemIssue[];
};

/**
 * The problem details of what a REST call failed with. The status and code come from the one
 * mapping /trpc uses (domain error → tRPC code in trpc/errors.ts → HTTP status), and the request
 * id and input issues from the router's own error formatter, so the two fronts cannot disagree.
 */
export function problemOf(cause: unknown, instance: string, requestId: string | null): Problem {
  const { error, status, shape } = formattedError(cause, requestId);
  const issues = shape.data.zodIssues ?? undefined;
  return {
    type: 'about:blank',
    title: http.STATUS_CODES[status] ?? 'Error',
    status,
    detail: shape.message,
    instance,
    code: error.code,
    requestId: shape.data.requestId,
    ...(issues ? { issues } : {}),
  };
}

/** When the error says a retry may succeed later (a limit): milliseconds to wait, for `Retry-After`. */
export function retryAfterMsOf(error: unknown): number | undefined {
  const cause = error instanceof HiatusError ? error : (error as TRPCError | undefined)?.cause;
  return cause instanceof HiatusError ? cause.retryAfterMs : undefined;
}

/** Answers `problem` as application/problem+json, with `Retry-After` (whole seconds) when given. */
export function sendProblem(
  res: http.ServerResponse,
  problem: Problem,
  headers: { retryAfterMs?: number; allow?: string } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem);
  res.statusCode = problem.status;
  res.setHeader('content-type', problemContentType);
  res.setHeader('content-length', Buffer.byteLength(body));
  if (headers.retryAfterMs) res.setHeader('retry-after', String(Math.ceil(headers.retryAfterMs / 1000)));
  if (headers.allow) res.setHeader('allow', headers.allow);
  res.end(body);
}
