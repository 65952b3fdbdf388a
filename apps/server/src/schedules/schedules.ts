import type { App } from '../app.ts';
import type { Db } from '../db/connection.ts';
import {
  buildFollows,
  claimOccasion,
  deleteOccasionsBefore,
  listScheduledTasks,
  type OccasionKey,
  recordOccasionBuild,
  releaseOccasion,
  type ScheduledTask,
} from '../db/schedules.ts';
import { defaults } from '../defaults.ts';
import { systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import type { NewEvent } from '../domain/events.ts';
import { type Schedule, type ScheduleState, scheduleAt } from '../domain/schedules.ts';
import { meteredPause, meteredResume } from '../lifecycle/metered.ts';
import { warnOnce } from '../lifecycle/occasions.ts';
import { forEachLimited } from '../limits/concurrency.ts';

export type SchedulePass = {
  checked: number;
  paused: string[];
  resumed: string[];
  warned: string[];
  /** Tasks whose pause or resume failed in a way the pass did not foresee; the pass went on past them. */
  failed: Array<{ taskId: string; error: string }>;
};

export type SchedulePassOptions = {
  /** The pass's clock: every window is judged at this instant (tests inject it). */
  now?: Date;
  /** How long before a window closes an active task's owner is warned; 0: no warning. */
  warningSeconds?: number;
  concurrency?: number;
};

/**
 * One look at every live task under a schedule (its own, or its template version's), at `now`:
 * - outside its windows, an active task (idle or working) is paused with reason
 *   `task_auto_pause`, the schedule named in the audit record, once per window end: a task a user
 *   starts or resumes after the window closed is left running until the next end;
 * - inside a window, a task the schedule paused (and nobody changed since) that has queued
 *   messages is resumed, once per window start; a task a user paused is never resumed;
 * - `warningSeconds` before a window closes, an active task's owner gets
 *   `task.schedule_pause_warning`, once.
 * Each occasion is claimed in the database first, so with several server processes one acts; a
 * pause or resume that loses a race (the task changed meanwhile) is not a failure.
 */
export async function schedulePass(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  options: SchedulePassOptions = {},
): Promise<SchedulePass> {
  const now = options.now ?? new Date();
  const warningSeconds = options.warningSeconds ?? defaults.schedulePauseWarningSeconds;
  const pass: SchedulePass = { checked: 0, paused: [], resumed: [], warned: [], failed: [] };
  // Tasks of one template share its schedule: each schedule is worked out once a pass.
  const states = new Map<string, ScheduleState>();
  const stateOf = (schedule: Schedule) => {
    const key = JSON.stringify(schedule);
    let state = states.get(key);
    if (!state) {
      state = scheduleAt(schedule, now);
      states.set(key, state);
    }
    return state;
  };
  let after: string | undefined;
  for (;;) {
    const tasks = await listScheduledTasks(app.db, { after, limit: defaults.schedulePageSize });
    await forEachLimited(tasks, options.concurrency ?? defaults.policyConcurrency, async (task) => {
      pass.checked++;
      try {
        await applySchedule(app, task, stateOf(task.schedule), { now, warningSeconds }, pass);
      } catch (error) {
        pass.failed.push({ taskId: task.id, error: error instanceof Error ? error.message : String(error) });
      }
    });
    if (tasks.length < defaults.schedulePageSize) break;
    after = tasks.at(-1)!.id;
  }
  await deleteOccasionsBefore(app.db, new Date(now.getTime() - defaults.policyOccasionKeepMs));
  return pass;
}

async function applySchedule(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  task: ScheduledTask,
  state: ScheduleState,
  clock: { now: Date; warningSeconds: number },
  pass: SchedulePass,
): Promise<void> {
  const { since, next } = state;
  if (!state.within) {
    // Started or resumed after the window closed: by a user, who wants it now. Left until the next end.
    const startedBefore = task.latestBuildAt !== null && since !== null && task.latestBuildAt <= since.at;
    if (task.status === 'active' && since?.kind === 'end' && startedBefore) {
      const key: OccasionKey = { taskId: task.id, occasion: 'schedule_pause', dueAt: since.at };
      if (await claimed(app, key, clock.now, () => pauseForSchedule(app, task, key))) pass.paused.push(task.id);
    }
    return;
  }
  if (task.status === 'paused' && task.pausedBySchedule && task.hasQueuedMessages && since?.kind === 'start') {
    const key: OccasionKey = { taskId: task.id, occasion: 'schedule_resume', dueAt: since.at };
    if (await claimed(app, key, clock.now, () => resumeForSchedule(app, task, key))) pass.resumed.push(task.id);
    return;
  }
  const warnFrom = next ? next.at.getTime() - clock.warningSeconds * 1000 : Number.POSITIVE_INFINITY;
  if (task.status === 'active' && next?.kind === 'end' && clock.warningSeconds > 0 && clock.now.getTime() >= warnFrom) {
    const event: NewEvent = {
      type: 'task.schedule_pause_warning',
      taskId: task.id,
      ownerId: task.ownerId,
      payload: { pauseAt: next.at.toISOString(), timeZone: task.schedule.timeZone },
    };
    const key: OccasionKey = { taskId: task.id, occasion: 'schedule_pause_warning', dueAt: next.at };
    if (await warnOnce(app, key, clock.now, event)) pass.warned.push(task.id);
  }
}

/**
 * Runs `act` for an occasion this process claimed: true when it acted. A lost race (the task
 * changed meanwhile: `conflict`, `not_found`) keeps the claim and is no failure; any other error
 * gives the claim back, so a later pass tries again, and is thrown to be counted.
 */
async function claimed(
  app: Pick<App, 'db'>,
  key: OccasionKey,
  now: Date,
  act: () => Promise<unknown>,
): Promise<boolean> {
  if (!(await claimOccasion(app.db, key, now))) return false;
  try {
    await act();
    return true;
  } catch (error) {
    if (error instanceof HiatusError && (error.code === 'conflict' || error.code === 'not_found')) return false;
    await releaseOccasion(app.db, key).catch(() => undefined);
    throw error;
  }
}

function pauseForSchedule(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  task: ScheduledTask,
  key: OccasionKey,
): Promise<unknown> {
  return meteredPause(app, systemActor, task.id, {
    reason: 'task_auto_pause',
    policy: {
      diff: { policy: 'schedule', schedule: task.schedule, windowEndedAt: key.dueAt.toISOString() },
      // The stop is the schedule's: while it stays the latest build, the schedule may resume the task.
      within: (trx, build) => recordOccasionBuild(trx, key, build.id),
    },
  });
}

function resumeForSchedule(app: Pick<App, 'db' | 'events'>, task: ScheduledTask, key: OccasionKey): Promise<unknown> {
  const pausedBy = task.latestBuildId!;
  return meteredResume(app, systemActor, task.id, {
    diff: { policy: 'schedule', schedule: task.schedule, windowStartedAt: key.dueAt.toISOString() },
    within: async (trx: Db, build) => {
      // Under the workspace lock: still the schedule's pause, with nothing (a user's resume and pause) since.
      if (!(await buildFollows(trx, build, pausedBy))) {
        throw new HiatusError('conflict', `task ${task.id} changed since its schedule paused it`);
      }
      await recordOccasionBuild(trx, key, build.id);
    },
  });
}
