/**
 * The product's one error, with a code in the domain's words. One table (in trpc/errors.ts) turns
 * each code into an API code; nothing else decides how an error reaches a caller.
 */
export const errorCodes = [
  /** No such thing, or not one the actor may see. */
  'not_found',
  /** The operation is not allowed from the current state, or a name is taken. */
  'conflict',
  /** The agent could not be asked (down, refused, timed out). */
  'agent_unreachable',
  /** The agent answered something that is not AgentAPI. */
  'agent_bad_response',
  /** A history over the configured limit. */
  'too_large',
  /** A stored snapshot in a format this version cannot read. */
  'unknown_snapshot_format',
  /** The actor may see the thing but not do this to it. */
  'forbidden',
  /** A wait (for a resume, say) ran out. */
  'timeout',
  /** An argument the domain cannot use (a cursor it did not give out). */
  'bad_input',
  /** The key a long-lived call (a watch) was opened with has since been revoked or has expired. */
  'unauthorized',
  /** The caller went past one of its own limits (calls a second, open watches, heavy reads): it may retry later. */
  'rate_limited',
  /** The server is at its bound for this kind of work, whoever asks: try again shortly. */
  'busy',
] as const;
export type HiatusErrorCode = (typeof errorCodes)[number];

export class HiatusError extends Error {
  override name = 'HiatusError';
  /** For `rate_limited` and `busy`: how long until a retry may succeed (sent as `Retry-After`). */
  readonly retryAfterMs: number | undefined;
  constructor(
    readonly code: HiatusErrorCode,
    message: string,
    options?: ErrorOptions & { retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export function taskNotFound(taskId: string): HiatusError {
  return new HiatusError('not_found', `task ${taskId} not found`);
}
