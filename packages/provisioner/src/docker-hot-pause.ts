import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/*
 * A hot pause freezes a task's container (`docker pause`: the cgroup freezer, memory kept) instead
 * of stopping it, for `hotPauseSeconds`; then it is stopped for real. The deadline is kept in the
 * data directory (`docker/hot-pauses/<taskId>.json`), since a container's labels cannot change
 * after its creation: a provisioner that restarts finds it there (reconcile), a frozen container
 * without one is past its deadline.
 */

/** A frozen container, and when it must be stopped for real. */
export type HotPause = { containerId: string; coldAt: string; stopGraceSeconds: number };

function recordPath(dataDir: string, taskId: string): string {
  return join(dataDir, 'docker', 'hot-pauses', `${taskId}.json`);
}

export async function readHotPause(dataDir: string, taskId: string): Promise<HotPause | null> {
  try {
    return JSON.parse(await readFile(recordPath(dataDir, taskId), 'utf8')) as HotPause;
  } catch {
    return null; // none, or cut short by a crash: stopped for real, as past its deadline
  }
}

export async function writeHotPause(dataDir: string, taskId: string, record: HotPause): Promise<void> {
  const file = recordPath(dataDir, taskId);
  await mkdir(join(dataDir, 'docker', 'hot-pauses'), { recursive: true });
  await writeFile(`${file}.partial`, JSON.stringify(record));
  await rename(`${file}.partial`, file);
}

export async function removeHotPause(dataDir: string, taskId: string): Promise<void> {
  cancelCooling(dataDir, taskId);
  await rm(recordPath(dataDir, taskId), { force: true });
}

/** This process's timers ending hot pauses, by data directory and task. */
const timers = new Map<string, NodeJS.Timeout>();

/** Runs `coolDown` at the record's deadline (at once when it has passed), in this process. */
export function scheduleCooling(dataDir: string, taskId: string, coldAt: string, coolDown: () => Promise<void>): void {
  cancelCooling(dataDir, taskId);
  const key = `${dataDir}\0${taskId}`;
  const timer = setTimeout(
    () => {
      timers.delete(key);
      void coolDown();
    },
    Math.max(0, Date.parse(coldAt) - Date.now()),
  );
  timer.unref(); // a hot pause does not keep a provisioner alive: the next one's reconcile ends it
  timers.set(key, timer);
}

function cancelCooling(dataDir: string, taskId: string): void {
  const key = `${dataDir}\0${taskId}`;
  clearTimeout(timers.get(key));
  timers.delete(key);
}

/** Forgets every timer, as a provisioner that died would (for tests of what its successor does). */
export function forgetCoolingTimers(): void {
  for (const timer of timers.values()) clearTimeout(timer);
  timers.clear();
}

/** Runs `work` after the work already queued for the same key: one task's operations in this process, one at a time. */
const queues = new Map<string, Promise<unknown>>();
export function serialized<T>(key: string, work: () => Promise<T>): Promise<T> {
  const before = queues.get(key) ?? Promise.resolve();
  const run = before.then(work, work);
  const settled = run.catch(() => undefined);
  queues.set(key, settled);
  void settled.then(() => {
    if (queues.get(key) === settled) queues.delete(key);
  });
  return run;
}
