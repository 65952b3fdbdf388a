import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '../src/config.ts';
import { loopbackAllowList } from './networks.ts';
import { testProvisionerDir } from './paths.ts';

/** A Hiatus server in a process of its own, as in production: started with tsx, killed at will. */
export type ServerProcess = {
  url: string;
  pid: number;
  child: ChildProcess;
  /** Log lines it printed (JSON objects), newest last. */
  lines: Array<Record<string, unknown>>;
  /** SIGTERM, and wait for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL: no goodbye, no cleanup. */
  kill(): Promise<void>;
};

const main = path.join(repoRoot, 'apps/server/src/main.ts');
/** What `pnpm start` runs: the server built by tsdown (at install). */
const compiledMain = path.join(repoRoot, 'apps/server/dist/main.mjs');

/**
 * Starts `apps/server/src/main.ts` with `env` on a free port; resolves once it listens. Node loads
 * tsx itself (`--import tsx`), so the pid is the server's own and SIGKILL reaches it. `compiled` runs
 * the built server instead, as `pnpm start` does (the benches measure that): `built`, or dist/main.mjs.
 */
export async function startServerProcess(
  env: Record<string, string>,
  nodeArgs: string[] = [],
  { compiled = false, built = compiledMain } = {},
): Promise<ServerProcess> {
  const entry = compiled ? [built] : ['--import', 'tsx', main];
  const child = spawn(process.execPath, [...nodeArgs, ...entry], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PORT: '0',
      LOG_LEVEL: 'info',
      HIATUS_PROVISIONER_DIR: testProvisionerDir,
      // Test and bench agents listen on loopback, which the address policy refuses unless allowed.
      HIATUS_ALLOWED_AGENT_NETWORKS: loopbackAllowList,
      // Test webhook receivers listen on loopback too.
      HIATUS_ALLOWED_WEBHOOK_NETWORKS: loopbackAllowList,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start: ${JSON.stringify(lines.slice(-5))}`)),
      // A hang's bound only: a start under the whole suite on two cores has taken 30 s and more.
      120_000,
    );
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${JSON.stringify(lines.slice(-5))}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (lines.length > 5_000) lines.splice(0, 1_000);
        if (entry.msg === 'listening') {
          clearTimeout(timer);
          resolve(String(entry.url));
        }
      } catch {
        lines.push({ raw: line });
      }
    });
    child.stderr!.on('data', () => undefined);
  });
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  return { url, pid: child.pid!, child, lines, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') };
}
