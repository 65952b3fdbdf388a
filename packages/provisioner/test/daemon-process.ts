import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const daemonBin = fileURLToPath(new URL('../bin/hiatus-provisioner.mjs', import.meta.url));

export type LogLine = { time: string; level: string; msg: string; [field: string]: unknown };

/** A `hiatus-provisioner` in a process of its own, started from its bin as a user would. */
export type DaemonProcess = {
  pid: number;
  child: ChildProcess;
  /** Its JSON log lines so far (anything else it printed is kept as `{ msg: 'raw', raw }`). */
  lines: LogLine[];
  stderr(): string;
  /** Resolves with its exit code (or signal) once it has exited. */
  exited: Promise<number | NodeJS.Signals>;
  /** The first log line, past or future, that `match` accepts; rejects after `ms` (generous by default: a hang's bound). */
  waitFor(match: (line: LogLine) => boolean, ms?: number): Promise<LogLine>;
  signal(name: NodeJS.Signals): void;
};

const everyDaemon = new Set<DaemonProcess>();

/** Starts the daemon with exactly these arguments and variables (plus PATH and HOME). */
export function startDaemon(args: string[], env: Record<string, string> = {}): DaemonProcess {
  const child = spawn(process.execPath, [daemonBin, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const watchers = new Set<() => void>();
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ time: '', level: 'raw', msg: 'raw', raw: text });
    }
    for (const watcher of watchers) watcher();
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const daemon: DaemonProcess = {
    pid: child.pid!,
    child,
    lines,
    stderr: () => stderr,
    exited,
    waitFor: (match, ms = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find(match);
          if (!line) return false;
          clearTimeout(timer);
          watchers.delete(watch);
          resolve(line);
          return true;
        };
        const watch = () => void check();
        const timer = setTimeout(() => {
          watchers.delete(watch);
          const tail = lines.slice(-8).map((l) => JSON.stringify(l));
          reject(new Error(`no such log line within ${ms} ms; last lines:\n${tail.join('\n')}\n${stderr}`));
        }, ms);
        if (!check()) watchers.add(watch);
      }),
    signal: (name) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(name);
    },
  };
  everyDaemon.add(daemon);
  void exited.then(() => everyDaemon.delete(daemon));
  return daemon;
}

/** SIGKILLs every daemon still running (for afterAll / afterEach, even after a failure). */
export async function killEveryDaemon(): Promise<void> {
  const left = [...everyDaemon];
  for (const daemon of left) daemon.signal('SIGKILL');
  await Promise.all(left.map((daemon) => daemon.exited));
}

/** Waits for `promise`, failing with `what` if it takes longer than `ms` (a hang's bound, never a speed check). */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
