import { createHash } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { folder, taskUidPath, uidClaimPath, uidDir } from './data-dir.ts';
import { DriverError } from './driver.ts';

/** A range of uids no account uses, one per task (`HIATUS_AGENT_USER=200000-265535`). */
export type UidRange = { from: number; to: number };

/*
 * Which task has which uid, under the data directory (root's, 0700), so daemons sharing it agree
 * and a restart keeps a task's uid (its workspace's files are that uid's):
 *   uids/by-uid/<uid>        the task that claimed it (created exclusively: one claim wins)
 *   uids/by-task/<taskId>    the uid it holds
 */
const byUid = uidClaimPath;
const byTask = taskUidPath;

/**
 * The task's own uid from `range`: the one it holds, or the first free one from a place its id
 * hashes to. Throws DriverError when every uid of the range is held.
 */
export async function taskUid(dataDir: string, taskId: string, range: UidRange): Promise<number> {
  await folder(join(uidDir(dataDir), 'by-uid'), 0o700);
  await folder(join(uidDir(dataDir), 'by-task'), 0o700);
  const held = Number(await readFile(byTask(dataDir, taskId), 'utf8').catch(() => Number.NaN));
  if (held >= range.from && held <= range.to && (await claimant(dataDir, held)) === taskId) return held;
  const size = range.to - range.from + 1;
  const first = createHash('sha256').update(taskId).digest().readUInt32BE(0) % size;
  for (let i = 0; i < size; i++) {
    const uid = range.from + ((first + i) % size);
    try {
      const claim = await open(byUid(dataDir, uid), 'wx', 0o600);
      await claim.writeFile(taskId);
      await claim.close();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if ((await claimant(dataDir, uid)) !== taskId) continue;
    }
    await writeFile(byTask(dataDir, taskId), String(uid), { mode: 0o600 });
    return uid;
  }
  throw new DriverError(
    `every uid of HIATUS_AGENT_USER's range ${range.from}-${range.to} is held by a task: widen the range`,
  );
}

async function claimant(dataDir: string, uid: number): Promise<string | null> {
  return readFile(byUid(dataDir, uid), 'utf8').catch(() => null);
}

/** Gives the task's uid back: its task is deleted. */
export async function releaseTaskUid(dataDir: string, taskId: string): Promise<void> {
  const held = Number(await readFile(byTask(dataDir, taskId), 'utf8').catch(() => Number.NaN));
  if (Number.isInteger(held) && (await claimant(dataDir, held)) === taskId)
    await rm(byUid(dataDir, held), { force: true });
  await rm(byTask(dataDir, taskId), { force: true });
}
