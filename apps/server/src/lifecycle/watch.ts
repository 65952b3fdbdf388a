import type { App } from '../app.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import { nextBuildEvent } from './build-events.ts';
import { getTask } from './tasks.ts';

/**
 * The task now, then again each time its status or latest build changes, until `signal` aborts.
 * Changes made in this process arrive at once; those of other processes within `pollMs`.
 */
export async function* watchTask(
  app: App,
  actor: Actor,
  taskId: string,
  signal: AbortSignal,
  pollMs: number = defaults.watchPollMs,
): AsyncGenerator<Task> {
  let last = await getTask(app, actor, taskId);
  yield last;
  while (!signal.aborted) {
    await nextBuildEvent(app, (event) => event.taskId === taskId, pollMs, signal);
    if (signal.aborted) return;
    const task = await getTask(app, actor, taskId);
    if (changed(last, task)) {
      last = task;
      yield task;
    }
  }
}

function changed(a: Task, b: Task): boolean {
  return (
    a.status !== b.status ||
    a.latestBuild?.id !== b.latestBuild?.id ||
    a.latestBuild?.jobStatus !== b.latestBuild?.jobStatus
  );
}
