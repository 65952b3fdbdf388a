import { AgentError } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import { databaseNow } from '../db/connection.ts';
import { claimDueAgentChecks, markAgentIdle, markAgentRunning, type Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { systemActor } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { HiatusError } from '../domain/errors.ts';
import { forEachLimited } from '../limits/concurrency.ts';
import { warnBeforeAutoPause } from './events.ts';
import { meteredPause } from './metered.ts';

export type AutoPausePass = {
  checked: number;
  paused: string[];
  /** Tasks whose look or pause failed in a way the pass did not foresee; the pass went on past them. */
  failed: Array<{ taskId: string; error: string }>;
};

/**
 * One look at each active task's agent that is due (every one, with `intervalMs` 0). A pass
 * claims due tasks in batches and moves their next look `intervalMs` on (db/tasks.ts
 * `claimDueAgentChecks`), so server processes share the work: each agent is asked about once an
 * interval however many processes run, and a pass over many agents is finished by whichever
 * processes are free. An agent seen `running` resets its task's idle clock;
 * one seen `stable` or unreachable keeps it going (the clock lives in the database, so every
 * server process shares it). A send through Hiatus (a queued message's delivery too) and a
 * keep-alive reset it as well, and while a keep-alive holds the clock stays stopped; reading a
 * task (its logs, a list, a watch) never touches it. A task idle longer than its timeout is paused by the system with
 * reason `task_auto_pause`; when several processes try at once, the pause's lock lets one win.
 * Within `autoPauseWarningSeconds` of its timeout, its owner is warned once (an event).
 * A task whose look or pause fails is named in `failed`, and the pass goes on: one hostile or
 * broken agent never holds up the others.
 */
export async function autoPausePass(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  options: { concurrency?: number; intervalMs?: number; batchSize?: number } = {},
): Promise<AutoPausePass> {
  const started = performance.now();
  const paused: string[] = [];
  const failed: AutoPausePass['failed'] = [];
  let checked = 0;
  const batchSize = options.batchSize ?? defaults.autoPauseBatchSize;
  // Due before the pass began: what this pass claims is due again only after it (even with interval 0).
  const cutoff = await databaseNow(app.db);
  for (;;) {
    const items = await claimDueAgentChecks(app.db, { limit: batchSize, intervalMs: options.intervalMs ?? 0, cutoff });
    await forEachLimited(items, options.concurrency ?? defaults.autoPauseConcurrency, async (task) => {
      checked++;
      // One task's failure is its own: the pass goes on to the others.
      try {
        if (await checkIdle(app, task)) paused.push(task.id);
      } catch (error) {
        failed.push({ taskId: task.id, error: error instanceof Error ? error.message : String(error) });
      }
    });
    if (items.length < batchSize) break;
  }
  const durationMs = performance.now() - started;
  app.events.emit('autoPause', { checked, paused: paused.length, failed: failed.length, durationMs });
  return { checked, paused, failed };
}

async function checkIdle(app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>, task: Task): Promise<boolean> {
  const seen = await app
    .agent(task.agentUrl, agentTrust(task))
    .status()
    .catch((error: unknown) => {
      if (error instanceof AgentError) return 'unreachable' as const;
      throw error;
    });
  if (seen === 'running') {
    await markAgentRunning(app.db, task.id);
    return false;
  }
  const idleSeconds = await markAgentIdle(app.db, task.id);
  const timeout = task.idleTimeoutSeconds ?? app.settings.defaultIdleTimeoutSeconds;
  if (idleSeconds === undefined) return false;
  if (idleSeconds < timeout) {
    const warning = app.settings.autoPauseWarningSeconds;
    if (warning > 0 && idleSeconds >= timeout - warning) {
      await warnBeforeAutoPause(app, task, { idleSeconds, idleTimeoutSeconds: timeout });
    }
    return false;
  }
  try {
    await meteredPause(app, systemActor, task.id, { reason: 'task_auto_pause' });
    return true;
  } catch (error) {
    // Another process paused it first, or it changed meanwhile: nothing left to do.
    if (error instanceof HiatusError && (error.code === 'conflict' || error.code === 'not_found')) return false;
    throw error;
  }
}
