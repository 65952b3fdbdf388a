import { TRPCClientError } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import { refusalSentence } from '../src/refusals.ts';

/** An error as the client makes it from the server's answer. */
function refused(code: string, message: string): TRPCClientError<never> {
  return TRPCClientError.from({ error: { code: -32000, message, data: { code, httpStatus: 400 } } });
}

describe('refusal sentences', () => {
  it('says which state a conflict found, in plain words', () => {
    const pausing = refused('CONFLICT', 'cannot pause task 1: it is pausing (pause is allowed when active)');
    expect(refusalSentence('pause', pausing)).toBe('This task is already pausing.');
    const paused = refused('CONFLICT', 'cannot pause task 1: it is paused (pause is allowed when active)');
    expect(refusalSentence('pause', paused)).toBe('This task is already paused.');
    const starting = refused('CONFLICT', 'cannot pause task 1: it is initializing (pause is allowed when active)');
    expect(refusalSentence('pause', starting)).toBe('This task is initializing: it cannot pause now.');
    const failedStart = refused(
      'CONFLICT',
      'cannot resume task 1: it is error after a failed start (resume is allowed when paused, error after a failed stop)',
    );
    expect(refusalSentence('resume', failedStart)).toBe(
      'This task is in error after a failed start: it cannot resume now.',
    );
  });

  it('gives every other refusal a sentence of its own', () => {
    expect(refusalSentence('read', refused('NOT_FOUND', 'task 1 not found'))).toBe(
      'This task does not exist, or it is not yours to see.',
    );
    expect(refusalSentence('pause', refused('FORBIDDEN', 'a read-only key'))).toBe(
      'Your API key may not pause (a read-only key).',
    );
    expect(refusalSentence('sign in', refused('UNAUTHORIZED', 'no'))).toBe(
      'This API key is not valid: it is unknown, expired or revoked.',
    );
    expect(refusalSentence('read', refused('UNAUTHORIZED', 'no'))).toMatch(/^Your API key is not valid any more/);
    expect(refusalSentence('send', refused('TOO_MANY_REQUESTS', 'slow down'))).toMatch(/^Too many requests/);
    expect(refusalSentence('pause', refused('PRECONDITION_FAILED', 'the agent is unreachable'))).toBe(
      'It did not work: the agent is unreachable',
    );
    expect(refusalSentence('read', new TRPCClientError('fetch failed'))).toBe('The server could not be reached.');
  });
});
