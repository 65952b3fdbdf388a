import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { folder, pidDir, pidFilePath } from './data-dir.ts';
import { parseStat } from './process-group.ts';
import { cgroupPopulated, treeAlive } from './process-tree.ts';

const pidFileSchema = z.object({
  pid: z.number().int().positive(),
  pgid: z.number().int().positive(),
  port: z.number().int().positive(),
  startedAt: z.string(),
  /** Linux: the boot and the leader's start time, so a pid reused after a reboot or a crash is not taken for ours. */
  bootId: z.string().optional(),
  startTime: z.string().optional(),
  /** The agent's own cgroup, where one was made (see process-tree.ts). */
  cgroup: z.string().optional(),
});

/** What the process driver remembers about an agent it started, in `pids/<taskId>.json`. */
export type PidFile = z.infer<typeof pidFileSchema>;

async function readOrNull(path: string): Promise<string | null> {
  return readFile(path, 'utf8').then(
    (text) => text.trim(),
    () => null,
  );
}

/** Who a pid is right now, as far as Linux can tell (nothing elsewhere). */
export async function processIdentity(pid: number): Promise<{ bootId?: string; startTime?: string }> {
  const bootId = (await readOrNull('/proc/sys/kernel/random/boot_id')) ?? undefined;
  const stat = await readOrNull(`/proc/${pid}/stat`);
  return { bootId, startTime: stat ? parseStat(stat).startTime : undefined };
}

/**
 * Written to a temporary name and renamed, so a crash never leaves half a pid file; mode 0600 in a
 * 0700 folder, as it holds the agent's port.
 */
export async function writePidFile(dataDir: string, taskId: string, record: PidFile): Promise<void> {
  const path = pidFilePath(dataDir, taskId);
  await folder(pidDir(dataDir), 0o700);
  await rm(`${path}.tmp`, { force: true }); // a mode is only given to a file made anew
  await writeFile(`${path}.tmp`, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

/** The task's pid file, or null when there is none or it cannot be read (nothing can be done with it). */
export async function readPidFile(dataDir: string, taskId: string): Promise<PidFile | null> {
  const text = await readOrNull(pidFilePath(dataDir, taskId));
  if (text === null) return null;
  try {
    return pidFileSchema.parse(JSON.parse(text));
  } catch {
    return null;
  }
}

export async function removePidFile(dataDir: string, taskId: string): Promise<void> {
  await rm(pidFilePath(dataDir, taskId), { force: true });
}

/** The task ids that have a pid file. */
export async function listPidFiles(dataDir: string): Promise<string[]> {
  const names = await readdir(pidDir(dataDir)).catch(() => []);
  return names.filter((name) => name.endsWith('.json')).map((name) => name.slice(0, -'.json'.length));
}

/**
 * Whether what a pid file names still runs and is still what we started: after a reboot or a long
 * absence its pgid may belong to a stranger, whom a stop must not kill. The task's cgroup is ours
 * whatever runs in it (a reboot removes it).
 */
export async function stillRunning(record: PidFile, taskId: string): Promise<boolean> {
  if (record.cgroup && (await cgroupPopulated(record.cgroup))) return true;
  const now = await processIdentity(record.pid);
  if (record.bootId && now.bootId && record.bootId !== now.bootId) return false;
  // The leader may have exited while the rest of its group runs on: then there is nothing to compare.
  if (record.startTime && now.startTime && record.startTime !== now.startTime) return false;
  return treeAlive({ pgid: record.pgid, cgroup: record.cgroup, taskId });
}
