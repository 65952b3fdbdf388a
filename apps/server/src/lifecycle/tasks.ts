import { isDeepStrictEqual } from 'node:util';
import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import type { Build } from '../db/builds.ts';
import { deleteTaskHistory } from '../db/history.ts';
import { deleteSnapshot } from '../db/snapshots.ts';
import {
  listTasks,
  liveTaskNameConstraint,
  lockLiveTaskSettings,
  type NewTaskRow,
  softDeleteTask,
  type Task,
  type TaskSettings,
  updateTaskSettings,
} from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, seesAllTasks } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import type { TaskStatus } from '../domain/lifecycle.ts';
import type { Schedule } from '../domain/schedules.ts';
import { resolveParameters } from '../domain/templates.ts';
import { getTemplate } from '../templates/templates.ts';
import { getTask } from './access.ts';
import { queuePrompt } from './first-messages.ts';
import { changeVisibleTask, commitTaskChange, type PolicyNote } from './transition.ts';

/**
 * A new task: an agent Hiatus does not manage (`agentUrl`, an "external" workspace whose builds
 * complete at once), or a workspace built from `template` with its `parameters`. An agent Hiatus
 * does not start gets its prompt as the first message of its inbox, unless `sendPrompt` is false
 * (the agent has it already); a template's driver hands the prompt to the agent it starts.
 */
export type NewTask = {
  name: string;
  prompt: string;
  idleTimeoutSeconds?: number | null;
  /** The task's own schedule, in place of its template's. */
  schedule?: Schedule | null;
} & (
  | { agentUrl: string; sendPrompt?: boolean; template?: undefined; parameters?: undefined }
  | {
      template: string;
      templateVersion?: number;
      parameters?: Record<string, string>;
      agentUrl?: undefined;
      sendPrompt?: undefined;
    }
);

/**
 * Creates a task for a user: its workspace, the task, and the first start build (reason
 * `initiator`), through the same change path as every other lifecycle step. A template's task
 * keeps the template version it was created from, and its idle timeout unless it sets its own.
 * An `agentUrl` task's prompt is queued in its inbox in the same transaction (see `NewTask`).
 */
export async function createTask(
  app: Pick<App, 'agentUrlRefusal' | 'db' | 'events'>,
  actor: Actor,
  input: NewTask,
): Promise<{ task: Task; build: Build }> {
  if (actor.kind !== 'user') throw new HiatusError('forbidden', 'tasks belong to users: the system cannot own one');
  let row: NewTaskRow;
  const base = { ownerId: actor.userId, name: input.name, prompt: input.prompt, schedule: input.schedule ?? null };
  if (input.template !== undefined) {
    const template = await getTemplate(app, input.template, input.templateVersion);
    if (template.archivedAt) throw new HiatusError('conflict', `template "${template.name}" is archived`);
    row = {
      ...base,
      agentUrl: null,
      templateId: template.id,
      parameters: resolveParameters(template.parameters, input.parameters ?? {}),
      idleTimeoutSeconds: input.idleTimeoutSeconds ?? template.idleTimeoutSeconds,
    };
  } else {
    // A user's agent must be where the operator allows (net/url-policy.ts): checked on the address
    // its host resolves to now, and again at every connection. A host that does not resolve is refused.
    const refusal = await app.agentUrlRefusal(input.agentUrl);
    if (refusal) throw new HiatusError('bad_input', `agentUrl: ${refusal}`);
    row = { ...base, agentUrl: input.agentUrl, idleTimeoutSeconds: input.idleTimeoutSeconds ?? null };
  }
  const owner = actor.userId;
  const { task, build } = await commitTaskChange(app, actor, {
    operation: 'create',
    reason: 'initiator',
    task: row,
    effect: async (trx, ref) => {
      const promptMessageId =
        row.agentUrl && input.sendPrompt !== false
          ? await queuePrompt(trx, actor, { id: ref.id, ownerId: owner, prompt: row.prompt })
          : undefined;
      return {
        value: undefined,
        diff: {
          name: row.name,
          agentUrl: row.agentUrl,
          idleTimeoutSeconds: row.idleTimeoutSeconds,
          ...(row.schedule ? { schedule: row.schedule } : {}),
          ...(row.templateId ? { templateId: row.templateId, parameters: row.parameters } : {}),
          ...(promptMessageId ? { promptMessageId } : {}),
        },
      };
    },
  }).catch((error: unknown) => {
    if ((error as { constraint?: string }).constraint === liveTaskNameConstraint) {
      throw new HiatusError('conflict', `you already have a task named "${input.name}"`);
    }
    throw error;
  });
  return { task, build };
}

export type TaskPage = { items: Task[]; nextCursor: string | null };

/** Tasks the actor may see, newest first. A member's `ownerId` filter can only name themselves. */
export async function listTasksFor(
  app: Pick<App, 'reads'>,
  actor: Actor,
  options: { status?: TaskStatus; ownerId?: string; limit?: number; cursor?: string },
): Promise<TaskPage> {
  let ownerId = options.ownerId;
  if (!seesAllTasks(actor) && actor.kind === 'user') {
    if (ownerId && ownerId !== actor.userId) return { items: [], nextCursor: null };
    ownerId = actor.userId;
  }
  const limit = options.limit ?? defaults.listPageSize;
  const after = options.cursor ? decodeTaskCursor(options.cursor) : undefined;
  const { items, more } = await listTasks(app.reads(), { status: options.status, ownerId, limit, after });
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
    throw new HiatusError('bad_input', 'the cursor is not one this service gave out');
  }
}

/**
 * Changes a live task's settings: where its agent answers (`agentUrl`, checked against the address
 * policy like at create; only for a task without a template, whose driver sets it), its idle
 * timeout (`null`: the template's or the service's default) and its own schedule (`null`: its
 * template's). Only whoever sees the task may (its owner, an admin); a deleted task is refused. The change and its audit record (`task.update`,
 * each changed field from and to) commit together; a call that changes nothing writes nothing.
 *
 * @example await updateTask(app, actor, taskId, { idleTimeoutSeconds: null });
 */
export async function updateTask(
  app: Pick<App, 'agentUrlRefusal' | 'db' | 'liveHistories'>,
  actor: Actor,
  taskId: string,
  settings: TaskSettings,
): Promise<Task> {
  const before = await getTask(app, actor, taskId);
  if (before.status === 'deleted') throw deletedTask(taskId);
  if (settings.agentUrl !== undefined) {
    if (before.templateId) {
      throw new HiatusError(
        'bad_input',
        `agentUrl: task ${taskId} runs a template's workspace, whose driver gives its agent's URL; it cannot be set`,
      );
    }
    const refusal = await app.agentUrlRefusal(settings.agentUrl);
    if (refusal) throw new HiatusError('bad_input', `agentUrl: ${refusal}`);
  }
  const previous = await app.db.transaction().execute(async (trx) => {
    const current = await lockLiveTaskSettings(trx, taskId);
    if (!current) throw deletedTask(taskId);
    const diff: Record<string, unknown> = {};
    if (settings.agentUrl !== undefined && settings.agentUrl !== current.agentUrl) {
      diff.agentUrl = changed(current.agentUrl, settings.agentUrl);
    }
    if (settings.idleTimeoutSeconds !== undefined && settings.idleTimeoutSeconds !== current.idleTimeoutSeconds) {
      diff.idleTimeoutSeconds = changed(current.idleTimeoutSeconds, settings.idleTimeoutSeconds);
    }
    if (settings.schedule !== undefined && !isDeepStrictEqual(settings.schedule, current.schedule)) {
      diff.schedule = changed(current.schedule, settings.schedule);
    }
    if (Object.keys(diff).length === 0) return current;
    await updateTaskSettings(trx, taskId, settings);
    await audit(trx, actor, { action: 'task.update', resourceType: 'task', resourceId: taskId, diff });
    return current;
  });
  // The old agent's cached history is of no use any more.
  if (settings.agentUrl !== undefined) app.liveHistories.forget(taskId, previous.agentUrl);
  return getTask(app, actor, taskId);
}

function deletedTask(taskId: string): HiatusError {
  return new HiatusError('conflict', `task ${taskId} is deleted: its settings cannot change`);
}

/**
 * Deletes a task: queues a delete build, soft-deletes the task and deletes its snapshot and the
 * kept segments of its history, in one transaction (a soft delete fires no cascade, and a
 * snapshot must not outlive its task). The
 * system deletes for a `policy` (retention of paused tasks), named in the audit record.
 */
export async function deleteTask(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  policy?: PolicyNote,
): Promise<{ task: Task; build: Build }> {
  const { task, build } = await changeVisibleTask(
    app,
    actor,
    taskId,
    'delete',
    'initiator',
    async (trx, _task, build) => {
      await policy?.within?.(trx, build);
      await softDeleteTask(trx, taskId);
      const snapshotDeleted = await deleteSnapshot(trx, taskId);
      const historySegmentsDeleted = await deleteTaskHistory(trx, taskId);
      return { value: undefined, diff: { ...policy?.diff, snapshotDeleted, historySegmentsDeleted } };
    },
  );
  return { task, build };
}

export { findLiveTask, getTask } from './access.ts';
