import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { taskUid, type UidRange } from './agent-uids.ts';
import { DriverError } from './driver.ts';
import type { CommandLine } from './process-group.ts';

/** The user the process driver runs agents as, when the provisioner runs as root. */
export type AgentUser = { uid: number; gid: number; name: string };

/** `nobody:nogroup`, wherever the name is missing. */
const nobody = { uid: 65534, gid: 65534 };

/** How agents run, as `agentUser` reads it; `range` when each task has a uid of its own. */
type AgentUserSetting = { user: AgentUser | null; explicit: boolean; range?: UidRange };

/**
 * How the process driver runs agents, from `HIATUS_AGENT_USER` (a user name, `uid[:gid]`, or a
 * range `from-to` of uids no account uses):
 * - as root: as that user, `nobody` when unset (`explicit` tells the two apart); `root` or `0`
 *   keeps them root (no separation, which the built-in provisioner warns about); a range gives
 *   each task a uid (and gid) of its own from it (`user` is then the range's first, for checks);
 * - as any other user: as that same user (it cannot switch); setting a user then is an error.
 * Throws DriverError with the sentence to show for a user that does not exist.
 */
function agentUser(env: NodeJS.ProcessEnv = process.env): AgentUserSetting {
  const setting = env.HIATUS_AGENT_USER?.trim() || undefined;
  const range = setting === undefined ? null : /^(\d+)-(\d+)$/.exec(setting);
  if (range && process.getuid?.() === 0) {
    const [from, to] = [Number(range[1]), Number(range[2])];
    if (from < 1 || to < from || to > 0xfffffffe) {
      throw new DriverError(
        `HIATUS_AGENT_USER=${setting} is no range of uids (from 1 up, the first not above the last)`,
      );
    }
    return { user: { uid: from, gid: from, name: String(from) }, explicit: true, range: { from, to } };
  }
  if (process.getuid?.() !== 0) {
    if (setting !== undefined && !sameUser(setting)) {
      throw new DriverError(
        `HIATUS_AGENT_USER=${setting} needs the provisioner to run as root to switch users (it runs as uid ${process.getuid?.()}): unset it, or run the provisioner as root`,
      );
    }
    return { user: null, explicit: setting !== undefined };
  }
  const user = lookUp(setting ?? 'nobody', setting === undefined);
  return { user: user.uid === 0 ? null : user, explicit: setting !== undefined };
}

/** The user the task's agent runs as: the setting's, or the task's own uid from its range. */
export async function agentUserOf(dataDir: string, taskId: string): Promise<AgentUserSetting> {
  const setting = agentUser();
  if (!setting.range) return setting;
  const uid = await taskUid(dataDir, taskId, setting.range);
  return { ...setting, user: { uid, gid: uid, name: String(uid) } };
}

const lookups = new Map<string, AgentUser>();

function lookUp(setting: string, isDefault: boolean): AgentUser {
  const known = lookups.get(setting);
  if (known) return known;
  let user: AgentUser;
  const numeric = /^(\d+)(?::(\d+))?$/.exec(setting);
  if (numeric) {
    const uid = Number(numeric[1]);
    const name = idOf(['-un', String(uid)]) ?? String(uid);
    const gid = numeric[2] !== undefined ? Number(numeric[2]) : Number(idOf(['-g', String(uid)]) ?? uid);
    user = { uid, gid, name };
  } else {
    const uid = idOf(['-u', setting]);
    if (uid === undefined) {
      if (!isDefault) throw new DriverError(`HIATUS_AGENT_USER names no user of this machine: ${setting}`);
      user = { ...nobody, name: 'nobody' };
    } else {
      user = { uid: Number(uid), gid: Number(idOf(['-g', setting]) ?? uid), name: setting };
    }
  }
  lookups.set(setting, user);
  return user;
}

/** `id`, which asks the system's user database (NSS: /etc/passwd, LDAP…); undefined for an unknown user. */
function idOf(args: string[]): string | undefined {
  try {
    return execFileSync('id', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function sameUser(setting: string): boolean {
  const uid = process.getuid?.();
  const numeric = /^(\d+)(?::\d+)?$/.exec(setting);
  return numeric ? Number(numeric[1]) === uid : idOf(['-u', setting]) === String(uid);
}

/**
 * Options to run a check as the agent user: with an environment of its own, never this process's
 * (which the agent user could read in /proc meanwhile: another agent is that user too).
 */
function asUser(user: AgentUser): { uid: number; gid: number; cwd: string; env: NodeJS.ProcessEnv } {
  return { uid: user.uid, gid: user.gid, cwd: '/', env: { PATH: '/usr/bin:/bin' } };
}

/** "nobody (uid 65534)". */
function describeUser(user: AgentUser): string {
  return user.name === String(user.uid) ? `uid ${user.uid}` : `${user.name} (uid ${user.uid})`;
}

/**
 * Why the process driver would run agents beside this process's secrets (readable through
 * /proc/<pid>/environ by an agent of the same user), or undefined when it keeps them apart: for
 * the built-in provisioner's warning at start. The default agent user counts only if it can reach
 * the data directory (the driver falls back to this process's user where it cannot).
 */
export async function agentSeparationWarning(
  dataDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  let chosen: { user: AgentUser | null; explicit: boolean };
  try {
    chosen = agentUser(env);
  } catch (error) {
    return (error as Error).message;
  }
  const { user, explicit } = chosen;
  const uid = process.getuid?.();
  if (!user) {
    return uid === 0
      ? "the process driver runs agents as root (HIATUS_AGENT_USER=root): an agent can read this process's environment through /proc"
      : `the process driver runs agents as this process's own user (uid ${uid}): an agent can read this process's environment through /proc`;
  }
  if (explicit) return undefined; // a start it cannot run fails, with a sentence
  let above = dirname(dataDir);
  while (!existsSync(above) && above !== dirname(above)) above = dirname(above);
  const entered = await new Promise<boolean>((resolve) =>
    execFile('/bin/sh', ['-c', 'cd "$1"', 'sh', above], asUser(user), (error) => resolve(!error)),
  );
  if (entered) return undefined;
  return `the agent user ${describeUser(user)} cannot reach the data directory ${dataDir} (${above} is not searchable by it), so the process driver runs agents as this process's own user, whose environment they can read through /proc`;
}

/**
 * What an argv command names that exists on this machine: its program (looked up on PATH) and the
 * absolute paths among its arguments, for a clear error before the start rather than the agent's
 * own. A shell string is the shell's to read: only /bin/sh is checked for it (what it reads, or
 * tries to, is its own affair).
 */
export function filesNamed(command: CommandLine, path: string | undefined): { program?: string; files: string[] } {
  if (typeof command === 'string') return { program: '/bin/sh', files: [] };
  const [first, ...rest] = command;
  return {
    program: first === undefined ? undefined : onPath(first, path),
    files: rest.filter((word) => isAbsolute(word) && existsSync(word)),
  };
}

function onPath(file: string, path: string | undefined): string | undefined {
  if (file.includes('/')) return existsSync(file) ? file : undefined;
  return (path ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, file))
    .find((candidate) => existsSync(candidate));
}

/**
 * Checks, as the agent user itself (the kernel decides), that it can enter and write its working
 * directory, run the command's program and read the files the command names. Throws DriverError
 * with a sentence naming what it cannot reach. Answers the `path` (a PATH) without the folders
 * the user cannot search (root's own, often): a command looked up there would be "Permission
 * denied" rather than not found.
 */
export async function checkAgentReach(
  user: AgentUser,
  cwd: string,
  named: { program?: string; files: string[] },
  path: string | undefined,
): Promise<string | undefined> {
  // Prints the first failing check as "<kind> <path>" and stops; else "path <folder>" for each searchable folder.
  const script = `cd "$1" 2>/dev/null && test -w . || { echo "cwd $1"; exit; }
if [ -n "$2" ] && ! test -x "$2"; then echo "program $2"; exit; fi
files=$3; shift 3
while [ "$files" -gt 0 ]; do test -r "$1" || { echo "file $1"; exit; }; shift; files=$((files - 1)); done
for d; do test -x "$d" && echo "path $d"; done; exit 0`;
  const folders = (path ?? '').split(delimiter).filter(Boolean);
  const args = ['-c', script, 'sh', cwd, named.program ?? '', String(named.files.length), ...named.files, ...folders];
  const output = await new Promise<string>((resolve, reject) =>
    execFile('/bin/sh', args, asUser(user), (error, stdout) => (error ? reject(error) : resolve(stdout))),
  ).catch((error: Error) => {
    throw new DriverError(`could not check what the agent user ${describeUser(user)} can reach: ${error.message}`);
  });
  const lines = output.split('\n').filter(Boolean);
  const [kind, ...rest] = (lines[0] ?? '').split(' ');
  const what = rest.join(' ');
  const advice = 'or set HIATUS_AGENT_USER to a user that can';
  if (kind === 'cwd') {
    throw new DriverError(
      `the agent user ${describeUser(user)} cannot enter its working directory ${what}: every directory above it must be searchable by that user (choose a data directory it can reach, ${advice})`,
    );
  }
  if (kind === 'program') {
    throw new DriverError(
      `the agent user ${describeUser(user)} cannot run ${what}, the agent command's program: make it and every directory above it reachable by that user, ${advice}`,
    );
  }
  if (kind === 'file') {
    throw new DriverError(
      `the agent user ${describeUser(user)} cannot read ${what}, which the agent command names: make it and every directory above it readable by that user, ${advice}`,
    );
  }
  if (path === undefined) return undefined;
  return lines.map((line) => line.slice('path '.length)).join(delimiter);
}
