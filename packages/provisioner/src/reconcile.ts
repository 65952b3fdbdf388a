import { defaults } from './defaults.ts';

type Waiter = { taskId: string; resolve: (run: boolean) => void; reject: (error: unknown) => void };

/**
 * A `shouldRun(taskId)` for `Driver.reconcile` that asks the server about many tasks in one call:
 * the questions asked within `windowMs` of the first go out together, at most `maxBatch` ids a
 * call. A failed call fails every question of its batch (a reconcile must then stop nothing).
 */
export function batchedShouldRun(
  ask: (taskIds: string[]) => Promise<string[]>,
  windowMs: number = defaults.shouldRunBatchMs,
  maxBatch: number = defaults.shouldRunBatchSize,
): (taskId: string) => Promise<boolean> {
  let queue: Waiter[] = [];

  const flush = () => {
    const waiting = queue;
    queue = [];
    for (let start = 0; start < waiting.length; start += maxBatch) {
      const batch = waiting.slice(start, start + maxBatch);
      const taskIds = [...new Set(batch.map((w) => w.taskId))];
      ask(taskIds).then(
        (running) => {
          const yes = new Set(running);
          for (const w of batch) w.resolve(yes.has(w.taskId));
        },
        (error) => {
          for (const w of batch) w.reject(error);
        },
      );
    }
  };

  return (taskId) =>
    new Promise<boolean>((resolve, reject) => {
      if (queue.length === 0) setTimeout(flush, windowMs);
      queue.push({ taskId, resolve, reject });
    });
}
