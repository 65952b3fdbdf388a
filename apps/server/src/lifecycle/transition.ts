import { type Build, insertNextBuild, lockWorkspace } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import type { BuildReason } from '../db/schema.ts';
import { findTask, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from './actor.ts';
import { audit, changed } from './audit.ts';
import type { Lifecycle } from './context.ts';
import { taskNotFound } from './errors.ts';
import { assertAllowed, deriveStatus, type Operation, transitions } from './status.ts';

/** What an operation changes beside its build, in the same transaction, and what it adds to the audit diff. */
export type TransitionChange<T> = (
  trx: Db,
  task: Task,
  build: Build,
) => Promise<{ value: T; diff?: Record<string, unknown> }>;

/**
 * Carries out one lifecycle operation on a task the actor may see: in one transaction, lock the
 * task's workspace, re-check that `operation` is still allowed (a racing one may have won), queue
 * its build, apply `change`, and write the audit record. The build is announced once committed.
 */
export async function queueTransition<T>(
  lc: Lifecycle,
  actor: Actor,
  visible: Task,
  operation: Operation,
  reason: BuildReason,
  change: TransitionChange<T>,
): Promise<{ build: Build; value: T }> {
  const transition = transitions[operation].transition;
  const { build, value } = await lc.db.transaction().execute(async (trx) => {
    await lockWorkspace(trx, visible.workspaceId);
    const task = await findTask(trx, visible.id);
    if (!task) throw taskNotFound(visible.id);
    assertAllowed(operation, task);
    const build = await insertNextBuild(trx, {
      workspaceId: task.workspaceId,
      transition,
      reason,
      initiatorId: initiatorId(actor),
    });
    const { value, diff } = await change(trx, task, build);
    await audit(trx, actor, {
      action: `task.${operation}`,
      resourceType: 'task',
      resourceId: task.id,
      buildReason: reason,
      diff: {
        status: changed(task.status, deriveStatus(null, { transition, jobStatus: 'pending' })),
        build: { id: build.id, number: build.buildNumber, transition },
        ...diff,
      },
    });
    return { build, value };
  });
  lc.events.emit('build', { taskId: visible.id, workspaceId: build.workspaceId, build });
  return { build, value };
}
