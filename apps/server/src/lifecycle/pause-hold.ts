import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '../app.ts';
import { lockWorkspace } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { endPauseHold, hasDeliveryInFlight, holdForPause, releasePauseHold } from '../db/inbox.ts';
import { findTask, type Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { HiatusError, taskNotFound } from '../domain/errors.ts';
import { assertAllowed } from '../domain/lifecycle.ts';

/**
 * Send and pause exclude each other here. Every delivery to an agent (the inbox's, or a send
 * straight to an active task) is a message leased in the database, claimed under the task's inbox
 * lock only while the task is active and no pause holds it. A pause takes its hold under the same
 * lock, then waits until no lease runs, and only then fetches the agent's history: a delivery
 * either completed before the fetch (so it is in the snapshot) or never started (so the message
 * stays queued). The rule is the lock and the two states it guards, not timing.
 */

/** How long a process holds a message it delivers: past the agent's two answers (status, POST) and a margin. */
export function deliveryLeaseMs(app: Pick<App, 'settings'>): number {
  return app.settings.agentTimeoutMs * 2 + defaults.inboxLeaseMarginMs;
}

/** How often a pause looks whether the deliveries under way have ended. */
const inFlightPollMs = 20;

export type PauseHold = {
  /** Ends the hold in the pause's transaction; refuses the pause if the hold ran out meanwhile. */
  end(trx: Db): Promise<void>;
  /** Lets the hold go without pausing (the pause failed): deliveries resume at once. */
  release(): Promise<void>;
};

/**
 * Holds an active task for its pause: no delivery starts from now on, and those under way have
 * ended (their agent took the message, or gave it back) when this returns. A hold is a lease long
 * enough for that wait and the fetch of the history: a pausing process that dies holds up the
 * task's deliveries until it runs out, never for good. `conflict` when the task is no longer
 * active or another pause holds it.
 */
export async function holdTaskForPause(app: Pick<App, 'db' | 'settings'>, task: Task): Promise<PauseHold> {
  const holdId = randomUUID();
  const leaseMs = deliveryLeaseMs(app);
  const holdMs = leaseMs + app.settings.agentTimeoutMs + defaults.inboxLeaseMarginMs;
  const replacing = givenUp.get(task.id);
  try {
    await app.db.transaction().execute(async (trx) => {
      await lockWorkspace(trx, task.workspaceId);
      const now = await findTask(trx, task.id);
      if (!now) throw taskNotFound(task.id);
      assertAllowed('pause', now);
      if (!(await holdForPause(trx, task.id, { id: holdId, ms: holdMs, replacing }))) {
        throw new HiatusError('conflict', `cannot pause task ${task.id}: another pause of it is under way`);
      }
    });
  } catch (error) {
    // A commit whose answer was lost may have taken the hold all the same.
    if (!(error instanceof HiatusError)) giveUp(app, task.id, holdId, holdMs);
    throw error;
  }
  if (givenUp.get(task.id) === replacing) givenUp.delete(task.id);
  const release = async () => {
    try {
      await releasePauseHold(app.db, task.id, holdId);
    } catch (error) {
      giveUp(app, task.id, holdId, holdMs);
      throw error;
    }
  };
  try {
    // A lease runs out at the latest `leaseMs` after the hold began: the wait is bounded by it.
    while (await hasDeliveryInFlight(app.db, task.id)) await sleep(inFlightPollMs);
  } catch (error) {
    await release().catch(() => undefined);
    throw error;
  }
  return {
    end: async (trx) => {
      if (!(await endPauseHold(trx, task.id, holdId))) {
        throw new HiatusError(
          'conflict',
          `the pause of task ${task.id} outlasted its hold on the task's deliveries (${holdMs} ms); pause again`,
        );
      }
    },
    release,
  };
}

/**
 * Holds this process's pauses gave up but could not clear (the database was away), by task: a
 * later pause here takes such a hold over at once, instead of being refused until it runs out, and
 * each is cleared in the background once the database answers. Other processes wait for it to
 * run out or be cleared. Keyed by task, so it stays as small as the tasks paused while the
 * database was away.
 */
const givenUp = new Map<string, string>();

function giveUp(app: Pick<App, 'db'>, taskId: string, holdId: string, holdMs: number): void {
  givenUp.set(taskId, holdId);
  const until = Date.now() + holdMs;
  void (async () => {
    for (let waitMs = 100; givenUp.get(taskId) === holdId && Date.now() < until; waitMs = Math.min(waitMs * 2, 2_000)) {
      try {
        await releasePauseHold(app.db, taskId, holdId);
        break;
      } catch {
        // Not a timer that keeps the process alive: the hold runs out by itself anyway.
        await sleep(waitMs, undefined, { ref: false });
      }
    }
    if (givenUp.get(taskId) === holdId) givenUp.delete(taskId);
  })();
}
