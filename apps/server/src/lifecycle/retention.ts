import type { App } from '../app.ts';
import { buildFollows, findOccasionClaim, listPausedNearRetention, type OccasionKey } from '../db/schedules.ts';
import { defaults } from '../defaults.ts';
import { systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { forEachLimited } from '../limits/concurrency.ts';
import { warnOnce } from './occasions.ts';
import { deleteTask } from './tasks.ts';

export type RetentionPass = {
  warned: string[];
  deleted: string[];
  /** Tasks whose delete failed in a way the pass did not foresee; the pass went on past them. */
  failed: Array<{ taskId: string; error: string }>;
};

export type RetentionOptions = {
  /** The pass's clock (tests inject it). */
  now?: Date;
  /** Days a task may stay paused, for tasks whose template version sets none; 0: forever. */
  defaultDays: number;
  /** How long before the delete the owner is warned; 0: no warning. */
  warningSeconds: number;
};

/**
 * The retention of paused tasks, at `now`: a task paused (its stop build succeeded) longer than
 * its limit (its template version's `pausedRetentionDays`, else `defaultDays`; 0 keeps it) is
 * deleted as the system would any task (soft delete, snapshot gone with it, purged later), the
 * policy named in the audit record. Its owner is warned first (`task.retention_warning`, once),
 * `warningSeconds` before, and never less than that before the delete: a task found already past
 * its limit is warned now and deleted `warningSeconds` later. A task resumed or changed since the
 * pass looked is left alone (the delete re-checks under the workspace lock).
 */
export async function retentionPass(
  app: Pick<App, 'db' | 'events'>,
  options: RetentionOptions,
): Promise<RetentionPass> {
  const now = options.now ?? new Date();
  const pass: RetentionPass = { warned: [], deleted: [], failed: [] };
  let after: string | undefined;
  for (;;) {
    const tasks = await listPausedNearRetention(app.db, {
      now,
      defaultDays: options.defaultDays,
      withinSeconds: options.warningSeconds,
      after,
      limit: defaults.schedulePageSize,
    });
    await forEachLimited(tasks, defaults.policyConcurrency, async (task) => {
      const deleteAt = new Date(task.pausedSince.getTime() + task.retentionDays * 86_400_000);
      const key: OccasionKey = { taskId: task.id, occasion: 'retention_warning', dueAt: deleteAt };
      try {
        if (options.warningSeconds > 0) {
          const warned = await warnOnce(app, key, now, {
            type: 'task.retention_warning',
            taskId: task.id,
            ownerId: task.ownerId,
            payload: {
              pausedSince: task.pausedSince.toISOString(),
              retentionDays: task.retentionDays,
              deleteAt: new Date(
                Math.max(deleteAt.getTime(), now.getTime() + options.warningSeconds * 1000),
              ).toISOString(),
            },
          });
          if (warned) pass.warned.push(task.id);
          const warnedAt = await findOccasionClaim(app.db, key);
          if (!warnedAt || now.getTime() < warnedAt.getTime() + options.warningSeconds * 1000) return;
        }
        if (now < deleteAt) return;
        await deleteTask(app, systemActor, task.id, {
          diff: {
            policy: 'paused_retention',
            retentionDays: task.retentionDays,
            pausedSince: task.pausedSince.toISOString(),
          },
          within: async (trx, build) => {
            if (!(await buildFollows(trx, build, task.stopBuildId))) {
              throw new HiatusError('conflict', `task ${task.id} changed since the retention pass looked`);
            }
          },
        });
        pass.deleted.push(task.id);
      } catch (error) {
        // Another process deleted it first, or it was resumed meanwhile: nothing left to do.
        if (error instanceof HiatusError && (error.code === 'conflict' || error.code === 'not_found')) return;
        pass.failed.push({ taskId: task.id, error: error instanceof Error ? error.message : String(error) });
      }
    });
    if (tasks.length < defaults.schedulePageSize) break;
    after = tasks.at(-1)!.id;
  }
  return pass;
}
