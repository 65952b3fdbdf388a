import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaults } from './defaults.ts';
import { DriverError } from './driver.ts';
import { groupAlive, parseStat } from './process-group.ts';

/*
 * Everything an agent started, however it tried to leave: a process group is not enough (a child
 * that calls setsid(), or a daemon that double-forks, has left it). Two ways, the first that works:
 *
 * - A cgroup v2 per task (`<our cgroup>/hiatus-agents/<taskId>.<hash of the data dir>`), where we
 *   are root and cgroup2 is mounted writable (on its own, or beside cgroup v1 at
 *   /sys/fs/cgroup/unified). The agent is born in it: the provisioner steps into the task's cgroup
 *   for the one synchronous spawn() call and back out, so nothing the agent runs is ever outside
 *   it, and an unprivileged agent cannot move out (the cgroup files are root's). A stop writes
 *   `cgroup.kill` (Linux 5.14+), which kills every member at once, forks racing it included.
 * - Otherwise every process whose environment holds the task's HIATUS_TASK_ID, found through
 *   /proc, with the process group: a process that execs with a scrubbed environment escapes it.
 */

/** What a stop must end: the agent's process group (0: none known), and its cgroup when it has one. */
export type TaskTree = { pgid: number; cgroup?: string; taskId: string };

/** Whether the group is alive; never signal group 0, which kill() takes for the caller's own. */
async function groupRuns(tree: TaskTree): Promise<boolean> {
  return tree.pgid > 0 && groupAlive(tree.pgid);
}

/** cgroup2's mount point and our own cgroup in it, read once; null where it is not usable. */
let cgroupHome: { mount: string; own: string } | null | undefined;
/** Why cgroups are not used here, once known (for the log). */
let cgroupMissing: string | undefined;

function findCgroupHome(): { mount: string; own: string } | null {
  if (cgroupHome !== undefined) return cgroupHome;
  cgroupHome = null;
  if (process.getuid?.() !== 0) {
    cgroupMissing = 'the provisioner is not root';
    return null;
  }
  try {
    const mount = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .find((fields) => fields[fields.indexOf('-') + 1] === 'cgroup2' && fields[3] === '/')?.[4];
    const own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
    if (!mount || own === undefined) {
      cgroupMissing = 'no cgroup2 file system is mounted';
      return null;
    }
    cgroupHome = { mount, own };
  } catch (error) {
    cgroupMissing = `cgroups cannot be read: ${(error as Error).message}`;
  }
  return cgroupHome;
}

/** Where the task's cgroup is (one per task and data directory), or undefined where cgroups cannot be used. */
export function cgroupFor(dataDir: string, taskId: string): string | undefined {
  const home = findCgroupHome();
  if (!home) return undefined;
  return join(home.mount, home.own, 'hiatus-agents', `${taskId}.${scopeOf(dataDir)}`);
}

function scopeOf(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
}

/** The task ids whose cgroup (of this data directory) exists: what a crash may have left without a pid file. */
export async function listTaskCgroups(dataDir: string): Promise<string[]> {
  const home = findCgroupHome();
  if (!home) return [];
  const suffix = `.${scopeOf(dataDir)}`;
  const names = await readdir(join(home.mount, home.own, 'hiatus-agents')).catch(() => []);
  return names.filter((name) => name.endsWith(suffix)).map((name) => name.slice(0, -suffix.length));
}

/**
 * Makes the task's cgroup and answers its path, or the reason (for the log) cgroups cannot be used
 * here: the stop then finds the task's processes by their environment.
 */
export async function makeTaskCgroup(dataDir: string, taskId: string): Promise<{ path?: string; missing?: string }> {
  const path = cgroupFor(dataDir, taskId);
  if (!path) return { missing: cgroupMissing };
  try {
    await mkdir(path, { recursive: true });
    await readFile(join(path, 'cgroup.kill')).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') throw new Error('this kernel has no cgroup.kill (Linux 5.14+)');
    });
  } catch (error) {
    return { missing: `the task's cgroup cannot be made: ${(error as Error).message}` };
  }
  return { path };
}

/**
 * Runs `spawn` with this process in `cgroup`, so the child is born in it, then moves back. The
 * call is synchronous: no other JavaScript runs meanwhile, and Hiatus spawns from its main thread
 * only, so no other child is born there. Answers the cgroup the child is in, or undefined with the
 * reason when this process could not enter it (the child was spawned anyway, and its stop falls
 * back to the environment). Where the move back fails, this process would die with the task at
 * its stop: `killTree` refuses to kill a cgroup holding it.
 */
export function spawnInCgroup<T>(
  cgroup: string | undefined,
  spawn: () => T,
): { spawned: T; cgroup?: string; missing?: string } {
  const home = findCgroupHome();
  if (!cgroup || !home) return { spawned: spawn() };
  try {
    writeFileSync(join(cgroup, 'cgroup.procs'), String(process.pid));
  } catch (error) {
    return { spawned: spawn(), missing: `the provisioner cannot enter the task's cgroup: ${(error as Error).message}` };
  }
  try {
    return { spawned: spawn(), cgroup };
  } finally {
    writeFileSync(join(home.mount, home.own, 'cgroup.procs'), String(process.pid));
  }
}

export async function cgroupPopulated(cgroup: string): Promise<boolean> {
  const events = await readFile(join(cgroup, 'cgroup.events'), 'utf8').catch(() => null);
  return events !== null && /^populated 1$/m.test(events);
}

async function cgroupPids(cgroup: string): Promise<number[]> {
  const procs = await readFile(join(cgroup, 'cgroup.procs'), 'utf8').catch(() => '');
  return procs.split('\n').filter(Boolean).map(Number);
}

/** Live processes (zombies aside) whose environment says they belong to the task. */
async function markedPids(taskId: string): Promise<number[]> {
  const marker = Buffer.from(`\0HIATUS_TASK_ID=${taskId}\0`);
  const found = await Promise.all(
    (await readdir('/proc').catch(() => []))
      .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
      .map(async (pid) => {
        try {
          const stat = parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
          if (stat.state === 'Z' || stat.state === 'X') return null;
          const environ = Buffer.concat([Buffer.from([0]), await readFile(`/proc/${pid}/environ`)]);
          return environ.includes(marker) ? Number(pid) : null;
        } catch {
          return null; // gone meanwhile, or not ours to read
        }
      }),
  );
  return found.filter((pid) => pid !== null);
}

/** Whether anything of the tree still runs. */
export async function treeAlive(tree: TaskTree): Promise<boolean> {
  if (tree.cgroup) return (await cgroupPopulated(tree.cgroup)) || groupRuns(tree);
  return (await groupRuns(tree)) || (await markedPids(tree.taskId)).length > 0;
}

function signal(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch {
    // gone meanwhile, or (a negative target) no such group
  }
}

/** Signals every member: the group, and each process of the cgroup or carrying the marker. */
async function signalTree(tree: TaskTree, name: NodeJS.Signals): Promise<void> {
  if (tree.pgid > 0) signal(-tree.pgid, name);
  const pids = tree.cgroup ? await cgroupPids(tree.cgroup) : await markedPids(tree.taskId);
  for (const pid of pids) signal(pid, name);
}

async function killTree(tree: TaskTree): Promise<void> {
  if (tree.cgroup) {
    const own = readFileSync('/proc/self/cgroup', 'utf8');
    if (own.includes(`::${tree.cgroup.slice((findCgroupHome()?.mount ?? '').length)}\n`)) {
      throw new DriverError(`refusing to kill cgroup ${tree.cgroup}: the provisioner itself is in it`);
    }
    await writeFile(join(tree.cgroup, 'cgroup.kill'), '1').catch(() => undefined); // gone: nothing left to kill
  }
  await signalTree(tree, 'SIGKILL');
}

/** Waits up to `ms` for the tree to be gone; `during` runs at each look (a kill repeated for late forks). */
async function waitGone(tree: TaskTree, ms: number, during?: () => Promise<void>): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (await treeAlive(tree)) {
    if (Date.now() >= deadline) return false;
    await sleep(defaults.groupPollMs);
    await during?.();
  }
  return true;
}

/**
 * Stops everything of a task's agent: SIGTERM to every member, up to `graceMs` to finish, then
 * SIGKILL to all; then its cgroup is removed. A tree already gone is a success. Throws DriverError
 * if anything survives SIGKILL.
 */
export async function stopTree(tree: TaskTree, graceMs: number): Promise<void> {
  if (await treeAlive(tree)) {
    await signalTree(tree, 'SIGTERM');
    await signalTree(tree, 'SIGCONT'); // a stopped (SIGSTOP) process only sees SIGTERM once it runs again
    if (!(await waitGone(tree, graceMs))) {
      await killTree(tree);
      if (!(await waitGone(tree, defaults.killWaitMs, () => killTree(tree)))) {
        throw new DriverError(`the agent's processes are still alive ${defaults.killWaitMs} ms after SIGKILL`);
      }
    }
  }
  if (tree.cgroup) await removeCgroup(tree.cgroup);
}

/** Removes a task's cgroup once empty (a live member keeps it: EBUSY). */
async function removeCgroup(cgroup: string): Promise<void> {
  await rmdir(cgroup).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw new DriverError(`cannot remove the agent's cgroup ${cgroup}: ${error.message}`);
  });
}
