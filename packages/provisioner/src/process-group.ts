import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaults } from './defaults.ts';
import { DriverError } from './driver.ts';

/** A command line for `/bin/sh -c`, or an argv run as is. */
export type CommandLine = string | string[];

/** How a spawned command ended: an exit code or signal, or it never started. */
export type Exit = { code: number | null; signal: NodeJS.Signals | null } | { error: Error };

/**
 * A spawned command: `pid` is its process group id too (undefined if it could not start); `exit`
 * settles when it ends or fails to start; `unref` lets the provisioner exit while it runs.
 */
export type GroupLeader = { pid: number | undefined; exit: Promise<Exit>; unref: () => void };

/**
 * Spawns a command as the leader of its own process group (and session), so that everything it
 * starts, however deep, can be signalled at once with `process.kill(-pgid)` and nothing outlives a stop.
 * Output goes to file descriptors rather than pipes: a background child that keeps a pipe open
 * would hold up the caller, and would die of SIGPIPE once the provisioner stops reading or restarts.
 */
export function spawnGroup(
  command: CommandLine,
  options: { cwd: string; env: NodeJS.ProcessEnv; stdout: number; stderr: number; uid?: number; gid?: number },
): GroupLeader {
  const [file, ...args] = typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
  let child: ChildProcess;
  try {
    child = spawn(file!, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      // Node drops the supplementary groups with them (setgroups(0)): the child has the one gid.
      uid: options.uid,
      gid: options.gid,
      stdio: ['ignore', options.stdout, options.stderr],
    });
  } catch (error) {
    // Some failures (E2BIG: an environment too large) throw at once instead of emitting 'error'.
    return { pid: undefined, exit: Promise.resolve({ error: error as Error }), unref: () => undefined };
  }
  // Listened to at once: a command that ends quickly must not end unseen.
  const exit = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ error }));
  });
  return { pid: child.pid, exit, unref: () => child.unref() };
}

/** "exited with code 1", "was killed by SIGKILL", "could not start: node2 was not found". */
export function describeExit(exit: Exit, command: CommandLine): string {
  if ('error' in exit) {
    const code = (exit.error as NodeJS.ErrnoException).code;
    const file = typeof command === 'string' ? '/bin/sh' : command[0];
    if (code === 'ENOENT') return `could not start: ${file} was not found (command not found)`;
    if (code === 'EACCES') return `could not start: ${file} is not executable`;
    if (code === 'E2BIG')
      return 'could not start: its environment is too large (one variable may hold at most 128 KiB)';
    return `could not start: ${exit.error.message}`;
  }
  if (exit.signal) return `was killed by ${exit.signal}`;
  // The shell's own codes for a command it could not run.
  if (exit.code === 127) return 'exited with code 127 (command not found)';
  if (exit.code === 126) return 'exited with code 126 (command not executable)';
  return `exited with code ${exit.code}`;
}

/** Sends a signal to a whole group; false when the group no longer exists. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw new DriverError(`cannot signal process group ${pgid}`, { cause: error });
  }
}

/**
 * Whether any process of the group still runs. `kill(-pgid, 0)` alone is not enough: exited but
 * unreaped members (zombies) still count for it, and where the init process reaps orphans slowly
 * (containers) a stopped group would look alive for seconds. Linux's /proc tells them apart.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  if (!signalGroup(pgid, 0)) return false;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true; // no procfs: trust kill()
  }
  const states = await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry))
      .map((pid) => readFile(`/proc/${pid}/stat`, 'utf8').then(parseStat, () => null)),
  );
  return states.some((stat) => stat?.pgid === pgid && stat.state !== 'Z' && stat.state !== 'X');
}

/** The fields of `/proc/<pid>/stat` we need; the command name in parentheses may hold spaces. */
export function parseStat(stat: string): { state: string; pgid: number; startTime: string } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', pgid: Number(fields[2]), startTime: fields[19] ?? '' };
}

async function waitGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (await groupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await sleep(defaults.groupPollMs);
  }
  return true;
}

/**
 * Stops a whole process group: SIGTERM, up to `graceMs` to finish, then SIGKILL.
 * A group that is already gone is a success. Throws DriverError if the group survives SIGKILL.
 */
export async function stopGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return;
  signalGroup(pgid, 'SIGCONT'); // a stopped (SIGSTOP) process only sees SIGTERM once it runs again
  if (await waitGone(pgid, graceMs)) return;
  signalGroup(pgid, 'SIGKILL');
  if (await waitGone(pgid, defaults.killWaitMs)) return;
  throw new DriverError(`process group ${pgid} is still alive ${defaults.killWaitMs} ms after SIGKILL`);
}
