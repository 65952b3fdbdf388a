import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, vi } from 'vitest';
import type { BuildSpec, DriverContext } from '../src/index.ts';

export const demoAgent = fileURLToPath(new URL('../demo-agent/agent.mjs', import.meta.url));
/** An agent that answers only once the test opens its gate (see the file). */
export const gatedAgent = fileURLToPath(new URL('./gated-agent.mjs', import.meta.url));
/** An agent whose port is taken before it can listen, the first time (see the file). */
export const portThief = fileURLToPath(new URL('./port-thief.mjs', import.meta.url));

/** Quotes a word for `/bin/sh`. */
export function sh(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A process that runs (zombies excluded), read from /proc independently of the code under test. */
type LiveProcess = { pid: number; pgid: number; environ: string[] };

async function liveProcesses(): Promise<LiveProcess[]> {
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  const processes = await Promise.all(
    pids.map(async (pid) => {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        const [state, , pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (state === 'Z' || state === 'X') return null;
        const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
        return { pid: Number(pid), pgid: Number(pgid), environ };
      } catch {
        return null; // gone meanwhile, or not ours to read
      }
    }),
  );
  return processes.filter((p) => p !== null);
}

/** Pids of the live processes a driver started for a task: they all carry its HIATUS_TASK_ID. */
export async function processesOfTask(taskId: string): Promise<number[]> {
  const marker = `HIATUS_TASK_ID=${taskId}`;
  return (await liveProcesses()).filter((p) => p.environ.includes(marker)).map((p) => p.pid);
}

/** SIGKILLs every process a driver started for a task, and their groups. */
export async function killTaskProcesses(taskId: string): Promise<void> {
  for (const pid of await processesOfTask(taskId)) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // already gone, or not a group leader
      }
    }
  }
}

/**
 * Kills and removes the process driver's cgroups of a task (named `<taskId>.<hash>` under
 * `hiatus-agents` in this process's cgroup v2), if any: what a failed test's agent left, daemons
 * with a scrubbed environment included.
 */
async function removeTaskCgroups(taskId: string): Promise<void> {
  const mount = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((dir) => existsSync(join(dir, 'cgroup.procs')));
  const own = /^0::(.*)$/m.exec(await readFile('/proc/self/cgroup', 'utf8'))?.[1];
  if (!mount || own === undefined) return;
  const parent = join(mount, own, 'hiatus-agents');
  for (const name of await readdir(parent).catch(() => [])) {
    if (!name.startsWith(`${taskId}.`)) continue;
    const cgroup = join(parent, name);
    await writeFile(join(cgroup, 'cgroup.kill'), '1').catch(() => undefined);
    await eventually(async () =>
      expect(await readFile(join(cgroup, 'cgroup.events'), 'utf8')).toMatch(/^populated 0$/m),
    );
    await rmdir(cgroup);
  }
}

/** Pids of the live members of a process group. */
export async function groupMembers(pgid: number): Promise<number[]> {
  return (await liveProcesses()).filter((p) => p.pgid === pgid).map((p) => p.pid);
}

/** The environment a process started with. */
export async function environOf(pid: number): Promise<Record<string, string>> {
  const entries = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean);
  return Object.fromEntries(
    entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
}

/**
 * Retries an assertion until it passes or `ms` runs out (then its last failure is thrown). Generous
 * by default: a wait on a condition costs nothing once it holds.
 */
export function eventually<T>(check: () => Promise<T>, ms = 60_000): Promise<T> {
  return vi.waitFor(check, { timeout: ms, interval: 50 });
}

export async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  return response.json();
}

export async function postMessage(agentUrl: string, content: string): Promise<Response> {
  return fetch(`${agentUrl}/message`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ content, type: 'user' }),
    signal: AbortSignal.timeout(30_000),
  });
}

/**
 * One harness per test file: a fresh data directory and task id for each test, a factory for
 * build specs with defaults, and afterwards every process a test's tasks left behind killed
 * (found by their HIATUS_TASK_ID, so even a failed test leaves nothing running).
 */
export function useHarness() {
  let dataDir = '';
  let tasks: string[] = [];

  const h = {
    get dataDir(): string {
      return dataDir;
    },
    get ctx(): DriverContext {
      return { dataDir };
    },
    /** The test's first task id. */
    get taskId(): string {
      return tasks[0]!;
    },
    /** Another task id, cleaned up like the first. */
    newTaskId(): string {
      const taskId = `task-${randomUUID()}`;
      tasks.push(taskId);
      return taskId;
    },
    spec(overrides: Partial<BuildSpec> = {}): BuildSpec {
      return {
        buildId: `build-${randomUUID()}`,
        taskId: h.taskId,
        workspaceId: `workspace-${overrides.taskId ?? h.taskId}`,
        transition: 'start',
        reason: 'initiator',
        prompt: '',
        parameters: {},
        settings: {},
        previousOutputs: null,
        ...overrides,
      };
    },
  };

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-provisioner-'));
    tasks = [];
    h.newTaskId();
  });

  afterEach(async () => {
    for (const taskId of tasks) {
      await killTaskProcesses(taskId);
      await removeTaskCgroups(taskId);
    }
    await rm(dataDir, { recursive: true, force: true });
  });

  return h;
}
