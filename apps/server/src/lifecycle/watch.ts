import type { App } from '../app.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import { ChangeWaiter } from './changes.ts';
import { assertKeyStillValid } from './stream-keys.ts';
import { getTask } from './tasks.ts';

export type WatchOptions = {
  pollMs?: number;
  /**
   * The key the watch was opened with: checked every `keyCheckMs`, and once it is revoked or
   * expired the watch ends with an `unauthorized` error (a clean end would read as "nothing more
   * to say"; the error tells the client why, and not to reopen with that key).
   */
  keyId?: string;
  keyCheckMs?: number;
};

/**
 * The task now, then again each time its status or latest build changes, until `signal` aborts.
 * Woken at once by changes of this process and, through the database's notifications, of every
 * other; `pollMs` is only the fallback look when no notification comes (a lost connection).
 */
export async function* watchTask(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  signal: AbortSignal,
  { pollMs = defaults.watchFallbackPollMs, keyId, keyCheckMs = defaults.watchKeyCheckMs }: WatchOptions = {},
): AsyncGenerator<Task> {
  // Listening before the first read: a change that commits meanwhile still wakes the next wait.
  const waiter = new ChangeWaiter(app, (notice) => notice.taskId === taskId || notice.workspaceId === workspaceId);
  let workspaceId: string | undefined;
  try {
    let last = await getTask(app, actor, taskId);
    workspaceId = last.workspaceId;
    yield last;
    let keyCheckedAt = Date.now();
    while (!signal.aborted) {
      await waiter.wait(keyId ? Math.min(pollMs, keyCheckMs) : pollMs, signal);
      if (signal.aborted) return;
      if (keyId && Date.now() - keyCheckedAt >= keyCheckMs) {
        await assertKeyStillValid(app.db, keyId);
        keyCheckedAt = Date.now();
      }
      const task = await getTask(app, actor, taskId);
      if (changed(last, task)) {
        last = task;
        yield task;
      }
    }
  } finally {
    waiter.close();
  }
}

function changed(a: Task, b: Task): boolean {
  return (
    a.status !== b.status ||
    a.latestBuild?.id !== b.latestBuild?.id ||
    a.latestBuild?.jobStatus !== b.latestBuild?.jobStatus
  );
}
