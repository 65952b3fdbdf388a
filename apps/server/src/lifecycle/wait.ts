import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import type { JobStatus } from '../domain/lifecycle.ts';
import { ChangeWaiter } from './changes.ts';
import { getTask } from './tasks.ts';

/** A change's answer after waiting for its build: `settled` says whether the build's job ended in time. */
export type Waited<T extends { task: Task; build: Build }> = T & { settled: boolean };

export type WaitOptions = { wait?: boolean; waitMs: number; signal?: AbortSignal };

/** `result` as it is without `wait`; with it, `waitForBuild`'s answer. */
export async function afterWaitIfAsked<T extends { task: Task; build: Build }>(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  result: T,
  { wait, waitMs, signal }: WaitOptions,
): Promise<T & { settled?: boolean }> {
  return wait ? waitForBuild(app, actor, result, waitMs, { signal }) : result;
}

const ended: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

/**
 * Waits, at most `waitMs`, until the job of the build a change queued (`result.build`) ends, and
 * answers the change's result with the task and build as they are then: a pause's task `paused`, a
 * resume's `active`, either's `error` when the job failed (`settled: true`). When the time runs out
 * (or `signal` aborts) the task is answered as it is, still `pausing` or `pending`, with `settled:
 * false`. A later build replacing this one (a delete, say) also ends the wait.
 *
 * Woken by builds of this process and the database's change notifications from others; the
 * fallback look (`pollMs`) covers a lost notification.
 */
export async function waitForBuild<T extends { task: Task; build: Build }>(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  result: T,
  waitMs: number,
  { signal, pollMs = defaults.watchFallbackPollMs }: { signal?: AbortSignal; pollMs?: number } = {},
): Promise<Waited<T>> {
  const { workspaceId } = result.task;
  const deadline = Date.now() + waitMs;
  // Listening before the first read: a job that ends meanwhile still wakes the next wait.
  const waiter = new ChangeWaiter(
    app,
    (notice) => notice.taskId === result.task.id || notice.workspaceId === workspaceId,
  );
  try {
    for (;;) {
      const task = await getTask(app, actor, result.task.id);
      const latest = task.latestBuild;
      const settled = latest === null || latest.id !== result.build.id || ended.includes(latest.jobStatus);
      const left = deadline - Date.now();
      if (settled || left <= 0 || signal?.aborted) {
        const build = latest?.id === result.build.id ? latest : result.build;
        return { ...result, task, build, settled };
      }
      await waiter.wait(Math.min(left, pollMs), signal);
    }
  } finally {
    waiter.close();
  }
}
