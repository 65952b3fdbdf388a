import type { Task } from '../db/tasks.ts';
import type { Actor } from './actor.ts';
import type { BuildEvent, Lifecycle } from './context.ts';
import { getTask } from './tasks.ts';

/**
 * The task now, then again each time its status or latest build changes, until `signal` aborts.
 * Changes made in this process arrive at once; those of other processes within `pollMs`.
 */
export async function* watchTask(
  lc: Lifecycle,
  actor: Actor,
  taskId: string,
  signal: AbortSignal,
  pollMs = 1_000,
): AsyncGenerator<Task> {
  let last = await getTask(lc, actor, taskId);
  yield last;
  while (!signal.aborted) {
    await nextWake(lc, taskId, pollMs, signal);
    if (signal.aborted) return;
    const task = await getTask(lc, actor, taskId);
    if (changed(last, task)) {
      last = task;
      yield task;
    }
  }
}

/** Resolves on this process's next build event for the task, after `pollMs`, or on abort. */
function nextWake(lc: Lifecycle, taskId: string, pollMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      lc.events.off('build', onBuild);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const onBuild = (event: BuildEvent) => {
      if (event.taskId === taskId) done();
    };
    const timer = setTimeout(done, pollMs);
    lc.events.on('build', onBuild);
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
