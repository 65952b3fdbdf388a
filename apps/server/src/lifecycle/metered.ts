import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import type { PauseFailureCause } from '../db/pause-failures.ts';
import type { Task } from '../db/tasks.ts';
import type { Actor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { recordPauseFailure } from './events.ts';
import { Laps } from './laps.ts';
import { type PauseOptions, type PauseResult, pauseTask } from './pause.ts';
import { resumeTask } from './resume.ts';
import type { PolicyNote } from './transition.ts';

// Measuring wraps the rules: the rules in pause.ts and resume.ts decide, these time them, announce
// how they ended, and count failed pauses. Callers from the outside (the API, auto-pause, send) use these.

/** `pauseTask`, timed and announced; a failed pause is counted by cause and announced as an event. */
export async function meteredPause(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  actor: Actor,
  taskId: string,
  options: PauseOptions,
): Promise<PauseResult> {
  const started = performance.now();
  const laps = new Laps();
  const timings = () => ({
    durationMs: performance.now() - started,
    fetchMs: laps.ms.fetch ?? 0,
    dbMs: laps.ms.db ?? 0,
  });
  try {
    const result = await pauseTask(app, actor, taskId, options, laps);
    app.events.emit('pause', {
      reason: options.reason,
      outcome: 'succeeded',
      ...timings(),
      snapshotBytes: result.snapshot.taken ? result.snapshot.bytes : null,
    });
    return result;
  } catch (error) {
    const cause = failureCause(error);
    app.events.emit('pause', { reason: options.reason, outcome: 'failed', cause, ...timings(), snapshotBytes: null });
    if (cause) {
      await recordPauseFailure(app, { taskId, reason: options.reason, cause, message: (error as Error).message })
        // Telemetry must never turn a clear error into another one.
        .catch(() => undefined);
    }
    throw error;
  }
}

/** `resumeTask`, timed and announced. */
export async function meteredResume(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  policy?: PolicyNote,
): Promise<{ task: Task; build: Build }> {
  const started = performance.now();
  try {
    const result = await resumeTask(app, actor, taskId, policy);
    app.events.emit('resume', { outcome: 'succeeded', durationMs: performance.now() - started });
    return result;
  } catch (error) {
    app.events.emit('resume', { outcome: 'failed', durationMs: performance.now() - started });
    throw error;
  }
}

/** Why a pause failed, in telemetry's words; null for failures it does not count (no such task). */
function failureCause(error: unknown): PauseFailureCause | null {
  if (!(error instanceof HiatusError)) return null;
  switch (error.code) {
    case 'agent_unreachable':
      return 'agent_down';
    case 'agent_bad_response':
      return 'garbage';
    case 'too_large':
      return 'too_large';
    case 'conflict':
      return 'conflict';
    default:
      return null;
  }
}
