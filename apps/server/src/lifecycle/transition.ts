import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import { type Build, insertNextBuild, lockWorkspace } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { insertEvents } from '../db/events.ts';
import { findTask, insertTaskWithWorkspace, type NewTaskRow, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { taskNotFound } from '../domain/errors.ts';
import type { NewEvent } from '../domain/events.ts';
import {
  assertAllowed,
  type BuildReason,
  type Operation,
  operationTransition,
  statusAfter,
  type TaskStatus,
} from '../domain/lifecycle.ts';
import { getTask } from './access.ts';
import { queueResumeRecap } from './first-messages.ts';

/** A task as a change needs it: a `Task` will do. */
export type TaskRef = { id: string; workspaceId: string };

/**
 * What an operation changes beside its build, in the same transaction, what it adds to the audit
 * diff, and (a pause) the size of the snapshot it stored, for the event.
 */
export type ChangeEffect<T> = (
  trx: Db,
  task: TaskRef,
  build: Build,
) => Promise<{ value: T; diff?: Record<string, unknown>; snapshotBytes?: number | null }>;

/**
 * Why the service changes a task on its own, for a policy (a schedule, a retention limit): named in
 * the change's audit diff. `within` runs in the change's transaction once its build is queued, to
 * check that the policy still applies (throwing refuses the change) or to record what it did.
 */
export type PolicyNote = { diff: Record<string, unknown>; within?: (trx: Db, build: Build) => Promise<void> };

/** A lifecycle change: create a task, or apply an operation to one the actor may see. */
export type TaskChange<T> = (
  | { operation: 'create'; task: NewTaskRow }
  | { operation: Exclude<Operation, 'create'>; task: TaskRef }
) & { reason: BuildReason; effect?: ChangeEffect<T> };

/**
 * The one place a lifecycle change is written. In one transaction: insert the task (create) or
 * lock its workspace and re-check that the operation is still allowed (a racing one may have
 * won), queue the build, apply the change's effect, write the audit record and the lifecycle
 * event (the outbox). The build is announced in this process once committed.
 */
export async function commitTaskChange<T = undefined>(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  change: TaskChange<T>,
): Promise<{ taskId: string; task: Task; build: Build; value: T; eventId: string | undefined }> {
  const transition = operationTransition[change.operation];
  const committed = await app.db.transaction().execute(async (trx) => {
    let ref: TaskRef;
    let before: TaskStatus | null = null;
    let templateId: string | null;
    let ownerId: string;
    let recapMessageId: string | undefined;
    let prompt = '';
    if (change.operation === 'create') {
      ref = await insertTaskWithWorkspace(trx, change.task);
      templateId = change.task.templateId ?? null;
      ownerId = change.task.ownerId;
    } else {
      ref = change.task;
      await lockWorkspace(trx, ref.workspaceId);
      const task = await findTask(trx, ref.id);
      if (!task) throw taskNotFound(ref.id);
      assertAllowed(change.operation, task);
      before = task.status;
      templateId = task.templateId;
      ownerId = task.ownerId;
      prompt = task.prompt;
    }
    const build = await insertNextBuild(trx, {
      workspaceId: ref.workspaceId,
      transition,
      reason: change.reason,
      initiatorId: initiatorId(actor),
      templateId,
    });
    if (change.operation === 'resume') {
      // A template's resume recap goes first, before anything the change's effect queues (a send's message).
      recapMessageId = await queueResumeRecap(trx, actor, { id: ref.id, ownerId, prompt, templateId });
    }
    const { value, diff, snapshotBytes } = change.effect
      ? await change.effect(trx, ref, build)
      : { value: undefined as T, snapshotBytes: undefined };
    await audit(trx, actor, {
      action: `task.${change.operation}`,
      resourceType: 'task',
      resourceId: ref.id,
      buildReason: change.reason,
      diff: {
        ...diff,
        ...(recapMessageId ? { recapMessageId } : {}),
        status: changed(before, statusAfter(change.operation)),
        build: { id: build.id, number: build.buildNumber, transition },
      },
    });
    const [event] = await insertEvents(trx, [
      lifecycleEvent(change, { taskId: ref.id, ownerId, build, snapshotBytes: snapshotBytes ?? null }),
    ]);
    // The task as this change left it, read before the commit: a provisioner woken by the commit
    // may finish the build before a read after it, and the answer must say what the change did.
    const task = await findTask(trx, ref.id);
    if (!task) throw taskNotFound(ref.id);
    return { taskId: ref.id, task, build, value, eventId: event?.id };
  });
  app.events.emit('build', {
    taskId: committed.taskId,
    workspaceId: committed.build.workspaceId,
    build: committed.build,
  });
  app.events.emit('change', {
    eventId: committed.eventId,
    taskId: committed.taskId,
    workspaceId: committed.build.workspaceId,
  });
  return committed;
}

/** The event a committed change announces: created, pausing, resuming or deleted. */
function lifecycleEvent(
  change: TaskChange<unknown>,
  facts: { taskId: string; ownerId: string; build: Build; snapshotBytes: number | null },
): NewEvent {
  const { taskId, ownerId, build } = facts;
  switch (change.operation) {
    case 'create':
      return {
        type: 'task.created',
        taskId,
        ownerId,
        payload: { name: change.task.name, templateId: change.task.templateId ?? null },
      };
    case 'pause':
      return {
        type: 'task.pausing',
        taskId,
        ownerId,
        payload: {
          reason: change.reason === 'task_auto_pause' ? 'task_auto_pause' : 'task_manual_pause',
          buildId: build.id,
          snapshotBytes: facts.snapshotBytes,
        },
      };
    case 'resume':
      return { type: 'task.resuming', taskId, ownerId, payload: { buildId: build.id } };
    case 'delete':
      return { type: 'task.deleted', taskId, ownerId, payload: { buildId: build.id } };
  }
}

/**
 * An operation on a task the actor may see, by id: refused early when its state does not allow it
 * (no lock taken), committed through `commitTaskChange` (which checks again under the lock), and
 * answered with the task as the change left it.
 */
export async function changeVisibleTask<T = undefined>(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  operation: Exclude<Operation, 'create'>,
  reason: BuildReason,
  effect?: ChangeEffect<T>,
): Promise<{ task: Task; build: Build; value: T }> {
  const visible = await getTask(app, actor, taskId);
  assertAllowed(operation, visible);
  const { task, build, value } = await commitTaskChange(app, actor, { operation, reason, task: visible, effect });
  return { task, build, value };
}
