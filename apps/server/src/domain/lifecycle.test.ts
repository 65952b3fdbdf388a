import { describe, expect, it } from 'vitest';
import {
  assertAllowed,
  deriveState,
  deriveStatus,
  type JobStatus,
  pauseStageOf,
  stateByBuild,
  statusAfter,
  type WorkspaceTransition,
} from './lifecycle.ts';

const subject = (transition: WorkspaceTransition, jobStatus: JobStatus, deletedAt: Date | null = null) => ({
  id: 't',
  deletedAt,
  latestBuild: { transition, jobStatus },
});

describe('task status', () => {
  it.each([
    ['start', 'pending', 'pending', 'wait'],
    ['start', 'running', 'initializing', 'wait'],
    ['start', 'succeeded', 'active', 'deliver'],
    ['stop', 'pending', 'pausing', 'refuse'],
    ['stop', 'running', 'pausing', 'refuse'],
    ['stop', 'succeeded', 'paused', 'resume'],
    ['start', 'failed', 'error', 'refuse'],
    ['stop', 'failed', 'error', 'resume'],
    ['delete', 'pending', 'deleted', 'refuse'],
  ] as const)('after a %s build that is %s: %s, and send may %s', (transition, jobStatus, status, send) => {
    expect(deriveStatus(null, { transition, jobStatus })).toBe(status);
    expect(deriveState(null, { transition, jobStatus }).send).toBe(send);
  });

  it('is deleted once the task is soft-deleted, whatever its builds', () => {
    expect(deriveStatus(new Date(), { transition: 'start', jobStatus: 'succeeded' })).toBe('deleted');
  });

  it('is pending while a task has no build yet (it is being created)', () => {
    expect(deriveStatus(null, null)).toBe('pending');
  });

  it('names the status each operation leaves a task in', () => {
    expect([statusAfter('create'), statusAfter('pause'), statusAfter('resume'), statusAfter('delete')]).toEqual([
      'pending',
      'pausing',
      'pending',
      'deleted',
    ]);
  });

  it('is one frozen table: no rule can be changed at run time', () => {
    expect(Object.isFrozen(stateByBuild)).toBe(true);
    expect(Object.isFrozen(stateByBuild.stop)).toBe(true);
    expect(Object.isFrozen(stateByBuild.stop.failed.allows)).toBe(true);
  });
});

describe('transitions', () => {
  it.each([
    ['pause', 'start', 'succeeded', true],
    ['pause', 'stop', 'succeeded', false],
    ['pause', 'stop', 'pending', false],
    ['pause', 'start', 'running', false],
    ['resume', 'stop', 'succeeded', true],
    ['resume', 'start', 'succeeded', false],
    ['resume', 'stop', 'running', false],
    ['delete', 'start', 'succeeded', true],
    ['delete', 'start', 'failed', true],
    ['delete', 'delete', 'pending', false],
  ] as const)('%s after a %s build that is %s: allowed %s', (operation, transition, jobStatus, allowed) => {
    const check = () => assertAllowed(operation, subject(transition, jobStatus));
    const status = deriveStatus(null, { transition, jobStatus });
    if (allowed) expect(check).not.toThrow();
    else expect(check).toThrow(new RegExp(`cannot ${operation} task t: it is ${status}`));
  });

  it('allows resume from error only after a failed stop, as a row of the table', () => {
    expect(stateByBuild.stop.failed.allows).toContain('resume');
    expect(stateByBuild.start.failed.allows).not.toContain('resume');
    expect(() => assertAllowed('resume', subject('stop', 'failed'))).not.toThrow();
    expect(() => assertAllowed('resume', subject('start', 'failed'))).toThrow(
      'cannot resume task t: it is error after a failed start (resume is allowed when paused or error after a failed stop)',
    );
  });

  it('refuses everything on a soft-deleted task', () => {
    for (const operation of ['pause', 'resume', 'delete'] as const) {
      expect(() => assertAllowed(operation, subject('stop', 'succeeded', new Date()))).toThrow(/it is deleted/);
    }
  });
});

describe('pause stage', () => {
  const now = new Date('2026-12-08T12:00:00Z');
  it('is hot while a driver holds the agent frozen, cold otherwise, and none unless paused', () => {
    const hot = { pauseStage: 'hot', coldAt: '2026-12-08T12:10:00Z' };
    expect(pauseStageOf('paused', hot, now)).toBe('hot');
    expect(pauseStageOf('paused', { ...hot, coldAt: '2026-12-08T11:59:59Z' }, now)).toBe('cold');
    expect(pauseStageOf('paused', { pauseStage: 'hot' }, now)).toBe('cold');
    expect(pauseStageOf('paused', { pauseStage: 'hot', coldAt: 'soon' }, now)).toBe('cold');
    expect(pauseStageOf('paused', {}, now)).toBe('cold');
    expect(pauseStageOf('paused', null, now)).toBe('cold');
    expect(pauseStageOf('active', hot, now)).toBeNull();
    expect(pauseStageOf('pausing', hot, now)).toBeNull();
  });
});
