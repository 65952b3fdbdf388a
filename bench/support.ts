// What the bench scripts share: a scratch database, a seeded task, waiting for a status, a
// process's memory, percentiles and printed tables.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import type { ServerProcess } from '../apps/server/test/server-process.ts';
import type { HiatusClient } from '../packages/client/src/index.ts';

const serverUrl =
  process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The bench measures the server, not one key's share of it: the per-key limits are off. */
export const withoutKeyLimits = {
  HIATUS_RATE_LIMIT_PER_SECOND: '0',
  HIATUS_MAX_CONCURRENT_CALLS_PER_KEY: '1000',
  HIATUS_HEAVY_READ_MS_PER_SECOND: '0',
};

/** A bench server's settings on database `url` with admin key `token`: no auto-pause, no key limits. */
export function benchServerEnv(url: string, token: string): Record<string, string> {
  return {
    DATABASE_URL: url,
    DATABASE_POOL_SIZE: '20',
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    ...withoutKeyLimits,
  };
}

export const quantile = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** Runs `run` with the URL of a new database on the bench's PostgreSQL, dropped afterwards. */
export async function withDatabase<T>(run: (url: string) => Promise<T>): Promise<T> {
  const name = `hiatus_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  try {
    return await run(url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

export async function seedTask(client: HiatusClient, agentUrl: string, name: string): Promise<{ id: string }> {
  const { task } = await client.tasks.create.mutate({ name, prompt: 'bench', agentUrl, sendPrompt: false });
  await waitFor(client, task.id, 'active');
  return task;
}

export async function waitFor(client: HiatusClient, id: string, status: string): Promise<void> {
  for (;;) {
    if ((await client.tasks.get.query({ id })).status === status) return;
    await new Promise((r) => setTimeout(r, 2));
  }
}

export async function rssKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (key: string) =>
    Number(/(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(key)) ?? '')?.[1] ?? 0);
  return { rss: field('VmRSS:'), hwm: field('VmHWM:') };
}

export function table(title: string, rows: Array<Record<string, unknown>>): void {
  console.log(`\n${title}`);
  console.table(rows);
}

const ms = (n: number) => Math.round(n * 100) / 100;

/** Runs `call` from `concurrency` loops for `seconds`; calls, calls a second and latency percentiles (ms). */
export async function measureLoad(seconds: number, concurrency: number, call: () => Promise<unknown>) {
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await call();
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    perSecond: Math.round(latencies.length / seconds),
    p50: ms(quantile(latencies, 0.5)),
    p99: ms(quantile(latencies, 0.99)),
  };
}

/** A counter's or a histogram's sum from a server's /metrics (0 when absent). */
export async function metricSum(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A free TCP port on loopback, for a process started next. */
export { freePort } from '../apps/server/test/private-postgres.ts';

const words =
  'the agent ran tests and fixed a failing build then wrote notes about each change in the repository'.split(' ');
let seed = 1;
/**
 * Words in a pseudo-random order, `size` characters long: text that compresses about as an agent's
 * prose does (some 3:1), not padding that vanishes in TOAST.
 */
export function prose(size: number): string {
  let text = '';
  while (text.length < size) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    text += `${words[seed % words.length]}${seed % 7 === 0 ? '. ' : ' '}${seed % 13 === 0 ? seed.toString(36) : ''}`;
  }
  return text.slice(0, size);
}
