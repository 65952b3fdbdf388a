import { sql } from 'kysely';
import { type Build, insertNextBuild } from '../db/builds.ts';
import { findTask, listTasks, type Task } from '../db/tasks.ts';
import { type Actor, seesAllTasks } from './actor.ts';
import { audit, changed } from './audit.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError, taskNotFound } from './errors.ts';
import type { TaskStatus } from './status.ts';
import { queueTransition } from './transition.ts';

export type NewTask = { name: string; prompt: string; agentUrl: string; idleTimeoutSeconds?: number | null };

/**
 * Creates a task for a user: its workspace, the task, and the first start build (reason
 * `initiator`), all in one transaction.
 */
export async function createTask(lc: Lifecycle, actor: Actor, input: NewTask): Promise<{ task: Task; build: Build }> {
  if (actor.kind !== 'user') throw new LifecycleError('forbidden', 'tasks belong to users: the system cannot own one');
  const { taskId, build } = await lc.db
    .transaction()
    .execute(async (trx) => {
      const workspace = await trx
        .insertInto('workspaces')
        .values({ owner_id: actor.userId, name: input.name })
        .returning('id')
        .executeTakeFirstOrThrow();
      const task = await trx
        .insertInto('tasks')
        .values({
          owner_id: actor.userId,
          workspace_id: workspace.id,
          name: input.name,
          prompt: input.prompt,
          agent_url: input.agentUrl,
          idle_timeout_seconds: input.idleTimeoutSeconds ?? null,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      const build = await insertNextBuild(trx, {
        workspaceId: workspace.id,
        transition: 'start',
        reason: 'initiator',
        initiatorId: actor.userId,
      });
      await audit(trx, actor, {
        action: 'task.create',
        resourceType: 'task',
        resourceId: task.id,
        buildReason: 'initiator',
        diff: {
          name: input.name,
          agentUrl: input.agentUrl,
          idleTimeoutSeconds: input.idleTimeoutSeconds ?? null,
          status: changed(null, 'pending'),
          build: { id: build.id, number: build.buildNumber, transition: 'start' },
        },
      });
      return { taskId: task.id, build };
    })
    .catch((error: unknown) => {
      if ((error as { constraint?: string }).constraint === 'tasks_owner_name_live_idx') {
        throw new LifecycleError('conflict', `you already have a task named "${input.name}"`);
      }
      throw error;
    });
  lc.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return { task: await getTask(lc, actor, taskId), build };
}

/**
 * A task the actor may see, or not_found: another member's task does not exist for them. Such a
 * refused attempt is audited (it changes nothing, so it is the one record without a change).
 */
export async function getTask(lc: Lifecycle, actor: Actor, taskId: string): Promise<Task> {
  const ownerOnly = !seesAllTasks(actor) && actor.kind === 'user' ? { ownerId: actor.userId } : {};
  const task = await findTask(lc.db, taskId, ownerOnly);
  if (task) return task;
  if (ownerOnly.ownerId && (await findTask(lc.db, taskId))) {
    await audit(lc.db, actor, { action: 'task.access_denied', resourceType: 'task', resourceId: taskId });
  }
  throw taskNotFound(taskId);
}

export type TaskPage = { items: Task[]; nextCursor: string | null };

/** Tasks the actor may see, newest first. A member's `ownerId` filter can only name themselves. */
export async function listTasksFor(
  lc: Lifecycle,
  actor: Actor,
  options: { status?: TaskStatus; ownerId?: string; limit?: number; cursor?: string },
): Promise<TaskPage> {
  let ownerId = options.ownerId;
  if (!seesAllTasks(actor) && actor.kind === 'user') {
    if (ownerId && ownerId !== actor.userId) return { items: [], nextCursor: null };
    ownerId = actor.userId;
  }
  const limit = options.limit ?? 50;
  const after = options.cursor ? decodeTaskCursor(options.cursor) : undefined;
  const { items, more } = await listTasks(lc.db, { status: options.status, ownerId, limit, after });
  const last = items.at(-1);
  return { items, nextCursor: more && last ? encodeTaskCursor(last) : null };
}

function encodeTaskCursor(task: Task): string {
  return Buffer.from(JSON.stringify([task.createdAt.toISOString(), task.id])).toString('base64url');
}

function decodeTaskCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string];
    const date = new Date(createdAt);
    if (Number.isNaN(date.getTime()) || typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error();
    return { createdAt: date, id };
  } catch {
    throw new LifecycleError('bad_input', 'the cursor is not one this service gave out');
  }
}

/**
 * Deletes a task: queues a delete build, soft-deletes the task and deletes its snapshot, in one
 * transaction (a soft delete fires no cascade, and a snapshot must not outlive its task).
 */
export async function deleteTask(lc: Lifecycle, actor: Actor, taskId: string): Promise<{ task: Task; build: Build }> {
  const visible = await getTask(lc, actor, taskId);
  const { build } = await queueTransition(lc, actor, visible, 'delete', 'initiator', async (trx) => {
    await trx.updateTable('tasks').set({ deleted_at: sql`NOW()` }).where('id', '=', taskId).execute();
    const snapshots = await trx.deleteFrom('task_snapshots').where('task_id', '=', taskId).executeTakeFirst();
    return { value: undefined, diff: { snapshotDeleted: snapshots.numDeletedRows > 0n } };
  });
  return { task: await getTask(lc, actor, taskId), build };
}
