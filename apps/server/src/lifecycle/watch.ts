import type { App, BuildEvent } from '../app.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
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
    await nextWake(app, taskId, pollMs, signal);
    if (signal.aborted) return;
    const task = await getTask(app, actor, taskId);
    if (changed(last, task)) {
      last = task;
      yield task;
    }
  }
}

/** Resolves on this process's next build event for the task, after `pollMs`, or on abort. */
function nextWake(app: App, taskId: string, pollMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      app.events.off('build', onBuild);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const onBuild = (event: BuildEvent) => {
      if (event.taskId === taskId) done();
    };
    const timer = setTimeout(done, pollMs);
    app.events.on('build', onBuild);
    signal.addEventListener('abort', done, { once: true });
  });
}

function changed(a: Task, b: Task): boolean {
  return (
    a.status !== b.status ||
    a.latestBuild?.id !== b.latestBuild?.id ||
    a.latestBuild?.jobStatus !== b.latestBuild?.jobStatus
  );
}
