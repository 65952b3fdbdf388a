import { chmod, lchown, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError } from './driver.ts';

/*
 * Where the drivers keep things under a provisioner's data directory:
 *   workspaces/<taskId>/               a task's working directory (0700, the agent user's), kept across stops, removed on delete
 *   logs/<taskId>.log                  what the process driver's agent printed (0600, out of the agent's reach)
 *   pids/<taskId>.json                 the processes the process driver started for a task (0600)
 *   builds/                            a command driver's output while its command runs
 *   conversations/<taskId>.json        a resume's previous conversation (0600, the agent user's)
 *   uids/                              which task holds which uid, when each agent has its own (0700)
 * The agent user may search the data directory, workspaces/ and conversations/ (mode 0711: reach
 * a name it knows, list nothing); the rest is the provisioner's alone.
 */

/** Task ids become file names: anything that could climb out of the data directory is refused. */
function fileName(taskId: string): string {
  if (!/^[\w.-]+$/.test(taskId) || taskId === '.' || taskId === '..') {
    throw new DriverError(`task id ${JSON.stringify(taskId)} cannot name a file`);
  }
  return taskId;
}

export function workspaceDir(dataDir: string, taskId: string): string {
  return join(dataDir, 'workspaces', fileName(taskId));
}

/** Out of the workspace: the provisioner appends to it as root, so the agent must not be able to swap it for a link. */
export function agentLogPath(dataDir: string, taskId: string): string {
  return join(dataDir, 'logs', `${fileName(taskId)}.log`);
}

export function pidDir(dataDir: string): string {
  return join(dataDir, 'pids');
}

export function pidFilePath(dataDir: string, taskId: string): string {
  return join(pidDir(dataDir), `${fileName(taskId)}.json`);
}

/** The process driver's per-task uids, when HIATUS_AGENT_USER is a range (see agent-uids.ts). */
export function uidDir(dataDir: string): string {
  return join(dataDir, 'uids');
}

/** `uids/by-task/<taskId>`: the uid the task holds. */
export function taskUidPath(dataDir: string, taskId: string): string {
  return join(uidDir(dataDir), 'by-task', fileName(taskId));
}

/** `uids/by-uid/<uid>`: the task holding the uid. */
export function uidClaimPath(dataDir: string, uid: number): string {
  return join(uidDir(dataDir), 'by-uid', String(uid));
}

export function buildOutputDir(dataDir: string): string {
  return join(dataDir, 'builds');
}

export function conversationDir(dataDir: string): string {
  return join(dataDir, 'conversations');
}

export function conversationFilePath(dataDir: string, taskId: string): string {
  return join(conversationDir(dataDir), `${fileName(taskId)}.json`);
}

/** Who owns what an agent is given: the agent user, or undefined for the provisioner's own. */
export type Owner = { uid: number; gid: number } | undefined;

/** A folder with exactly `mode`, whatever the umask or an older release left. */
export async function folder(path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  await chmod(path, mode);
}

/**
 * Makes the task's working directory, mode 0700, owned by `owner`. The data directory gains
 * search (o+x, not read) so the agent user can reach it; workspaces/ is 0711. A workspace an
 * earlier start left to another owner is handed over whole (links are not followed).
 */
export async function makeWorkspace(dataDir: string, taskId: string, owner: Owner): Promise<string> {
  await mkdir(dataDir, { recursive: true });
  if (owner) {
    const mode = (await stat(dataDir)).mode & 0o7777;
    if ((mode & 0o001) === 0) await chmod(dataDir, mode | 0o001);
  }
  await folder(join(dataDir, 'workspaces'), 0o711);
  const dir = workspaceDir(dataDir, taskId);
  await folder(dir, 0o700);
  if (owner && (await lstat(dir)).uid !== owner.uid) await chownTree(dir, owner);
  return dir;
}

async function chownTree(path: string, owner: { uid: number; gid: number }): Promise<void> {
  await lchown(path, owner.uid, owner.gid);
  if (!(await lstat(path)).isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), owner);
}
