/**
 * What went wrong, in the domain's words. One mapping (in trpc/) turns each code into an API error.
 * - not_found: no such task (or not one the actor may see)
 * - conflict: the transition is not allowed from the task's status, or a name is taken
 * - agent_unreachable / agent_bad_response: the agent could not be asked, or answered garbage
 * - too_large: a history over the configured limit
 * - unknown_snapshot_format: a stored snapshot in a format this version cannot read
 * - forbidden: the actor may see the thing but not do this to it
 * - timeout: a wait (for a resume, say) ran out
 * - bad_input: an argument the domain cannot use (a cursor it did not give out)
 */
export type LifecycleErrorCode =
  | 'not_found'
  | 'conflict'
  | 'agent_unreachable'
  | 'agent_bad_response'
  | 'too_large'
  | 'unknown_snapshot_format'
  | 'forbidden'
  | 'timeout'
  | 'bad_input';

export class LifecycleError extends Error {
  override name = 'LifecycleError';
  constructor(
    readonly code: LifecycleErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function taskNotFound(taskId: string): LifecycleError {
  return new LifecycleError('not_found', `task ${taskId} not found`);
}
