import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import { insertEvents } from '../db/events.ts';
import { setKeepAlive, type Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { runningStatuses } from '../domain/lifecycle.ts';
import { getTask } from './access.ts';

/**
 * Holds off auto-pause of a running (or starting) task for `forSeconds` from now (the default
 * when not given; at most `defaults.maxKeepAliveSeconds`), replacing an earlier keep-alive, and
 * restarts its idle clock: a keep-alive is activity. It never wakes a task: a paused one answers
 * `conflict`. Audited as `task.keep_alive` and announced as the event of the same name.
 */
export async function keepTaskAlive(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  forSeconds: number = defaults.keepAliveSeconds,
): Promise<{ task: Task; keepAliveUntil: Date }> {
  if (!Number.isInteger(forSeconds) || forSeconds < 1 || forSeconds > defaults.maxKeepAliveSeconds) {
    throw new HiatusError('bad_input', `forSeconds must be a whole number from 1 to ${defaults.maxKeepAliveSeconds}`);
  }
  const task = await getTask(app, actor, taskId);
  if (!runningStatuses.includes(task.status)) {
    throw new HiatusError(
      'conflict',
      `cannot keep task ${taskId} alive: it is ${task.status} (a keep-alive never wakes a task; resume it first)`,
    );
  }
  const { until, eventId } = await app.db.transaction().execute(async (trx) => {
    const kept = await setKeepAlive(trx, taskId, forSeconds);
    if (!kept) throw new HiatusError('conflict', `cannot keep task ${taskId} alive: it is deleted`);
    await audit(trx, actor, {
      action: 'task.keep_alive',
      resourceType: 'task',
      resourceId: taskId,
      diff: { keepAliveUntil: changed(kept.before?.toISOString() ?? null, kept.until.toISOString()), forSeconds },
    });
    const [event] = await insertEvents(trx, [
      {
        type: 'task.keep_alive',
        taskId,
        ownerId: task.ownerId,
        payload: { until: kept.until.toISOString(), forSeconds },
      },
    ]);
    return { until: kept.until, eventId: event?.id };
  });
  app.events.emit('change', { eventId, taskId, workspaceId: task.workspaceId });
  return { task: await getTask(app, actor, taskId), keepAliveUntil: until };
}
