// pnpm bench:start: how long the server takes from its process start to listening, and its memory
// once idle, built (`pnpm start`: dist/main.mjs) against its sources through tsx (`pnpm dev`), on
// an already migrated PostgreSQL and on the embedded PGlite (a fresh folder, then again).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { quantile, rssKiB, table, withDatabase } from './support.ts';

const root = path.join(import.meta.dirname, '..');
const defaultRuns = Number(process.env.BENCH_START_RUNS ?? 5);
const token = `bench-${randomBytes(24).toString('hex')}`;
const ways = {
  built: ['apps/server/dist/main.mjs'],
  'sources (tsx)': ['--import', 'tsx', 'apps/server/src/main.ts'],
  'pnpm start': null,
} as const;

/** Starts the server one way; ms from spawn to its "listening" line, and its RSS after 2 s idle. */
async function startOnce(way: keyof typeof ways, env: Record<string, string>) {
  const args = ways[way];
  const started = performance.now();
  const child = args
    ? spawn(process.execPath, [...args], {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'ignore'],
      })
    : spawn('pnpm', ['--silent', 'start'], {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
  const readyMs = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${way} exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"msg":"listening"')) resolve(performance.now() - started);
    });
  });
  await sleep(2_000);
  const pid = way === 'pnpm start' ? undefined : child.pid!;
  const rss = pid ? Math.round((await rssKiB(pid)).rss / 1024) : null;
  child.kill('SIGINT');
  await new Promise((resolve) => child.once('exit', resolve));
  return { readyMs, rss };
}

async function series(runs: number, label: string, way: keyof typeof ways, env: () => Promise<Record<string, string>>) {
  const ready: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < runs; i++) {
    const result = await startOnce(way, await env());
    ready.push(result.readyMs);
    if (result.rss !== null) rss.push(result.rss);
  }
  ready.sort((a, b) => a - b);
  rss.sort((a, b) => a - b);
  return {
    start: label,
    how: way,
    runs,
    'ready p50 ms': Math.round(quantile(ready, 0.5)),
    'ready max ms': Math.round(ready.at(-1)!),
    'idle RSS p50 MiB': rss.length ? quantile(rss, 0.5) : '(pnpm wraps it)',
  };
}

const base = { PORT: '0', LOG_LEVEL: 'info', HIATUS_ADMIN_TOKEN: token, HIATUS_AUTO_PAUSE_INTERVAL_MS: '0' };

/** Every way and database above, `runs` starts each. */
export async function startUp(runs = defaultRuns): Promise<Array<Record<string, unknown>>> {
  const provisionerDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-bench-start-'));
  const rows: Array<Record<string, unknown>> = [];
  try {
    await withDatabase(async (url) => {
      const env = async () => ({ ...base, DATABASE_URL: url, HIATUS_PROVISIONER_DIR: provisionerDir });
      await startOnce('built', await env()); // migrates it
      rows.push(await series(runs, 'PostgreSQL, migrated', 'built', env));
      rows.push(await series(runs, 'PostgreSQL, migrated', 'pnpm start', env));
      rows.push(await series(runs, 'PostgreSQL, migrated', 'sources (tsx)', env));
    });
    const fresh = async () => ({
      ...base,
      DATABASE_URL: '',
      HIATUS_DATA_DIR: await mkdtemp(path.join(provisionerDir, 'pglite-')),
      HIATUS_PROVISIONER_DIR: provisionerDir,
    });
    rows.push(await series(runs, 'PGlite, fresh folder', 'built', fresh));
    const kept = await fresh();
    await startOnce('built', kept);
    rows.push(await series(runs, 'PGlite, migrated', 'built', async () => kept));
    rows.push(await series(runs, 'PGlite, migrated', 'sources (tsx)', async () => kept));
    return rows;
  } finally {
    await rm(provisionerDir, { recursive: true, force: true });
  }
}

export const startUpTitle = (runs = defaultRuns) => `server start to listening, ${runs} runs each`;

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await startUp();
  table(startUpTitle(), rows);
  const out = path.join(import.meta.dirname, 'results', 'start-up.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(rows, null, 2)}\n`);
}
