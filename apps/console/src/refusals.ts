import { TRPCClientError } from '@trpc/client';
import { errorCode } from './api.ts';

/** What the user tried, in the words a refusal sentence needs. */
export type Attempt = 'pause' | 'resume' | 'delete' | 'send' | 'create' | 'read' | 'sign in';

/** The state a conflict names: "cannot pause task …: it is pausing (pause is allowed when active)". */
function stateInConflict(message: string): string | null {
  return /: it is ([^(]+?) \(/.exec(message)?.[1] ?? null;
}

const alreadyIn: Partial<Record<Attempt, string>> = { pause: 'paus', resume: 'resum', delete: 'delet' };

/** A refusal as a plain sentence: CONFLICT on a pause of a pausing task → "This task is already pausing." */
export function refusalSentence(attempt: Attempt, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  switch (errorCode(error)) {
    case 'CONFLICT': {
      const state = stateInConflict(message);
      if (!state) return `This task cannot ${attempt} now: ${message}.`;
      const stem = alreadyIn[attempt];
      if (stem && state.startsWith(stem)) return `This task is already ${state}.`;
      return `This task is ${state.startsWith('error') ? `in ${state}` : state}: it cannot ${attempt} now.`;
    }
    case 'UNAUTHORIZED':
      return attempt === 'sign in'
        ? 'This API key is not valid: it is unknown, expired or revoked.'
        : 'Your API key is not valid any more (unknown, expired or revoked): sign in again.';
    case 'FORBIDDEN':
      return `Your API key may not ${attempt === 'read' ? 'see this' : attempt} (${message}).`;
    case 'NOT_FOUND':
      return 'This task does not exist, or it is not yours to see.';
    case 'TOO_MANY_REQUESTS':
      return 'Too many requests with this key: wait a moment and try again.';
    case 'SERVICE_UNAVAILABLE':
      return 'The server is busy or its database unreachable: try again shortly.';
    case 'BAD_REQUEST':
      return `The server refused the input: ${message}`;
    case 'PRECONDITION_FAILED':
    case 'UNPROCESSABLE_CONTENT':
    case 'TIMEOUT':
      return `It did not work: ${message}`;
    default:
      return error instanceof TRPCClientError && !error.data
        ? 'The server could not be reached.'
        : `Something went wrong: ${message}`;
  }
}
