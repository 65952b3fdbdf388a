import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import { type Build, insertNextBuild, lockWorkspace } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { findTask, insertTaskWithWorkspace, type NewTaskRow, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { taskNotFound } from '../domain/errors.ts';
import {
  assertAllowed,
  type BuildReason,
  type Operation,
  operationTransition,
  statusAfter,
  type TaskStatus,
} from '../domain/lifecycle.ts';
import { getTask } from './access.ts';

/** A task as a change needs it: a `Task` will do. */
export type TaskRef = { id: string; workspaceId: string };

/** What an operation changes beside its build, in the same transaction, and what it adds to the audit diff. */
export type ChangeEffect<T> = (
  trx: Db,
  task: TaskRef,
  build: Build,
) => Promise<{ value: T; diff?: Record<string, unknown> }>;

/** A lifecycle change: create a task, or apply an operation to one the actor may see. */
export type TaskChange<T> = (
  | { operation: 'create'; task: NewTaskRow }
  | { operation: Exclude<Operation, 'create'>; task: TaskRef }
) & { reason: BuildReason; effect?: ChangeEffect<T> };

/**
 * The one place a lifecycle change is written. In one transaction: insert the task (create) or
 * lock its workspace and re-check that the operation is still allowed (a racing one may have
 * won), queue the build, apply the change's effect, and write the audit record. The build is
 * announced once committed.
 */
export async function commitTaskChange<T = undefined>(
  app: App,
  actor: Actor,
  change: TaskChange<T>,
): Promise<{ taskId: string; build: Build; value: T }> {
  const transition = operationTransition[change.operation];
  const committed = await app.db.transaction().execute(async (trx) => {
    let ref: TaskRef;
    let before: TaskStatus | null = null;
    let templateId: string | null;
    if (change.operation === 'create') {
      ref = await insertTaskWithWorkspace(trx, change.task);
      templateId = change.task.templateId ?? null;
    } else {
      ref = change.task;
      await lockWorkspace(trx, ref.workspaceId);
      const task = await findTask(trx, ref.id);
      if (!task) throw taskNotFound(ref.id);
      assertAllowed(change.operation, task);
      before = task.status;
      templateId = task.templateId;
    }
    const build = await insertNextBuild(trx, {
      workspaceId: ref.workspaceId,
      transition,
      reason: change.reason,
      initiatorId: initiatorId(actor),
      templateId,
    });
    const { value, diff } = change.effect ? await change.effect(trx, ref, build) : { value: undefined as T };
    await audit(trx, actor, {
      action: `task.${change.operation}`,
      resourceType: 'task',
      resourceId: ref.id,
      buildReason: change.reason,
      diff: {
        ...diff,
        status: changed(before, statusAfter(change.operation)),
        build: { id: build.id, number: build.buildNumber, transition },
      },
    });
    return { taskId: ref.id, build, value };
  });
  app.events.emit('build', {
    taskId: committed.taskId,
    workspaceId: committed.build.workspaceId,
    build: committed.build,
  });
  return committed;
}

/**
 * An operation on a task the actor may see, by id: refused early when its state does not allow it
 * (no lock taken), committed through `commitTaskChange` (which checks again under the lock), and
 * answered with the task as it is afterwards.
 */
export async function changeVisibleTask<T = undefined>(
  app: App,
  actor: Actor,
  taskId: string,
  operation: Exclude<Operation, 'create'>,
  reason: BuildReason,
  effect?: ChangeEffect<T>,
): Promise<{ task: Task; build: Build; value: T }> {
  const visible = await getTask(app, actor, taskId);
  assertAllowed(operation, visible);
  const { build, value } = await commitTaskChange(app, actor, { operation, reason, task: visible, effect });
  return { task: await getTask(app, actor, taskId), build, value };
}
