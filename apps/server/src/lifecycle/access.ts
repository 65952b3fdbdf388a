import type { App } from '../app.ts';
import { auditRefusal } from '../audit/audit.ts';
import { findTask, type Task } from '../db/tasks.ts';
import { type Actor, seesAllTasks } from '../domain/actor.ts';
import { taskNotFound } from '../domain/errors.ts';

/**
 * A task the actor may see, or not_found: another member's task does not exist for them. Such a
 * refused attempt is audited (it changes nothing, so it is the one record without a change), once
 * a minute per actor and task however often it is repeated.
 */
export async function getTask(app: Pick<App, 'db'>, actor: Actor, taskId: string): Promise<Task> {
  const ownerOnly = !seesAllTasks(actor) && actor.kind === 'user' ? { ownerId: actor.userId } : {};
  const task = await findTask(app.db, taskId, ownerOnly);
  if (task) return task;
  if (ownerOnly.ownerId && (await findTask(app.db, taskId))) {
    await auditRefusal(app.db, actor, { action: 'task.access_denied', resourceType: 'task', resourceId: taskId });
  }
  throw taskNotFound(taskId);
}

/** A live task by id, whoever owns it, or undefined: for callers that checked the actor otherwise (a workspace key). */
export async function findLiveTask(app: Pick<App, 'db'>, taskId: string): Promise<Task | undefined> {
  const task = await findTask(app.db, taskId);
  return task && task.status !== 'deleted' ? task : undefined;
}
