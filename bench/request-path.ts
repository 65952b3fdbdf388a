// pnpm bench:requests: the request path alone. A plain HTTP load (node:http, keep-alive, one call per
// request, no SDK batching) against the compiled server on PostgreSQL, with the server's own CPU per
// request read from /proc, beside the same tasks.get SQL through a raw pg pool. `--profile` also
// writes a CPU profile of the server under the tasks.get load and prints where its time went.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { DB } from '../apps/server/src/db/schema.ts';
import { findTaskQuery } from '../apps/server/src/db/tasks.ts';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient } from '../packages/client/src/index.ts';
import { benchServerEnv, measureLoad, quantile, seedTask, table, withDatabase } from './support.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
const resultsDir = path.join(import.meta.dirname, 'results');
const serverDir = path.join(import.meta.dirname, '..', 'apps', 'server');
const token = `bench-${randomBytes(24).toString('hex')}`;

/** A process's user and system CPU so far, in µs (from /proc: clock ticks of 10 ms). */
async function cpuMicros(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) * 10_000, system: Number(fields[12]) * 10_000 }; // utime, stime
}

/** `call` from 16 loops for the run's seconds, with the CPU `pid` spent meanwhile per call. */
async function loadWithCpu(pid: number | null, call: () => Promise<unknown>) {
  const before = pid === null ? null : await cpuMicros(pid);
  const run = await measureLoad(seconds, concurrency, call);
  if (pid === null || before === null) return { ...run, cpuPerCall: Number.NaN, systemPerCall: Number.NaN };
  const after = await cpuMicros(pid);
  const per = (micros: number) => Math.round(micros / run.requests);
  return {
    ...run,
    cpuPerCall: per(after.user - before.user + after.system - before.system),
    systemPerCall: per(after.system - before.system),
  };
}

/** One GET through keep-alive connections; throws unless it answers 200 (a refusal must not pass as speed). */
function getter(base: string, pathAndQuery: string, headers: Record<string, string>) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(pathAndQuery, base);
  return () =>
    new Promise<void>((resolve, reject) => {
      request(url, { agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          if (res.statusCode === 200) return resolve();
          const text = Buffer.concat(chunks).toString().slice(0, 200);
          reject(new Error(`${pathAndQuery} answered ${res.statusCode}: ${text}`));
        });
      })
        .on('error', reject)
        .end();
    });
}

/**
 * The floor under the request path (test/bare-trpc-server.ts, its own process): `info`'s answer from a
 * plain node:http handler, and from a bare tRPC router through the server's adapter.
 */
async function withFloor<T>(run: (floor: { url: string; pid: number }) => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(serverDir, 'test', 'bare-trpc-server.ts')], {
    cwd: serverDir,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the bare tRPC server exited with ${code}`)));
      createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line).port));
    });
    return await run({ url: `http://127.0.0.1:${port}`, pid: child.pid! });
  } finally {
    child.kill('SIGTERM');
  }
}

export type RequestPathFigures = Awaited<ReturnType<typeof measureRequestPath>>;

/** `tasks.get` of a task as a plain GET, the tRPC wire format's `?input=` (superjson's envelope). */
const tasksGetPath = (taskId: string) =>
  `/trpc/tasks.get?input=${encodeURIComponent(JSON.stringify({ json: { id: taskId } }))}`;

/** The request path's figures against `server` (on database `url`), for a task it holds. */
export async function measureRequestPath(url: string, server: ServerProcess, taskId: string, key = token) {
  const auth = { authorization: `Bearer ${key}` };
  const calls = {
    healthz: getter(server.url, '/healthz', {}),
    info: getter(server.url, '/trpc/info', {}),
    'tasks.get': getter(server.url, tasksGetPath(taskId), auth),
  };
  const pgPool = new pg.Pool({ connectionString: url, max: concurrency });
  const compiled = findTaskQuery(new Kysely<DB>({ dialect: new PostgresDialect({ pool: pgPool }) }), taskId).compile();
  const raw = () => pgPool.query(compiled.sql, [...compiled.parameters]);
  const sdk = createHiatusClient({ url: server.url, token: key });
  const viaSdk = () => sdk.tasks.get.query({ id: taskId });
  try {
    for (const call of [...Object.values(calls), raw, viaSdk]) await measureLoad(1, 4, call); // warm up
    const rows: Array<Record<string, unknown>> = [];
    const perCall: Record<string, ReturnType<typeof loadWithCpu> extends Promise<infer T> ? T : never> = {};
    for (const [name, call] of Object.entries(calls)) perCall[name] = await loadWithCpu(server.pid, call);
    await withFloor(async (floor) => {
      const bare = getter(floor.url, '/trpc/info', {});
      const plain = getter(floor.url, '/plain', {});
      for (const call of [bare, plain]) await measureLoad(1, 4, call); // warm up
      perCall['info floor: bare tRPC, same adapter'] = await loadWithCpu(floor.pid, bare);
      perCall['info floor: plain node:http'] = await loadWithCpu(floor.pid, plain);
    });
    const viaPg = await loadWithCpu(null, raw);
    perCall['tasks.get (SDK)'] = await loadWithCpu(server.pid, viaSdk);
    for (const [name, figures] of Object.entries(perCall)) {
      rows.push({
        call: name,
        'req/s': figures.perSecond,
        'p50 ms': figures.p50,
        'p99 ms': figures.p99,
        'server CPU µs/call': figures.cpuPerCall,
        '  of which system': figures.systemPerCall,
        '÷ raw pg': name.startsWith('tasks.get') ? Math.round((figures.perSecond / viaPg.perSecond) * 100) / 100 : '',
      });
    }
    rows.push({
      call: 'tasks.get SQL on a raw pg pool',
      'req/s': viaPg.perSecond,
      'p50 ms': viaPg.p50,
      'p99 ms': viaPg.p99,
    });
    return {
      concurrency,
      seconds,
      rows,
      tasksGetRatio: Math.round((perCall['tasks.get']!.perSecond / viaPg.perSecond) * 100) / 100,
      tasksGetCpuMicros: perCall['tasks.get']!.cpuPerCall,
      infoCpuMicros: perCall.info!.cpuPerCall,
      floorCpuMicros: {
        bareTrpc: perCall['info floor: bare tRPC, same adapter']!.cpuPerCall,
        plainHttp: perCall['info floor: plain node:http']!.cpuPerCall,
      },
    };
  } finally {
    await pgPool.end();
  }
}

type ProfileNode = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};
type CpuProfile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number };

/** The package (or file) a profiled function comes from. */
function placeOf(url: string): string {
  if (!url) return '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const pkg = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  return pkg ?? path.basename(url);
}

/**
 * Where the server's CPU went between `from` and `to` (µs on the monotonic clock both processes share):
 * self time by package and by function, and the time spent inside a few stages of a call (inclusive).
 */
function profileSummary(profile: CpuProfile, from: number, to: number, top = 15) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stages: Record<string, (frame: ProfileNode['callFrame']) => boolean> = {
    // tRPC's own adapter's names, and Hiatus's (trpc/node-adapter.ts).
    'request → request object (adapter)': (f) => ['incomingMessageToRequest', 'NodeRequest'].includes(f.functionName),
    'answer → socket (adapter)': (f) => f.functionName === 'writeResponse',
    'resolveResponse (tRPC core)': (f) => f.functionName === 'resolveResponse',
    'createContext (key check)': (f) => f.functionName === 'requestContext',
    'database (Kysely + pg)': (f) => ['kysely', 'pg', 'pg-pool', 'pg-protocol'].includes(placeOf(f.url)),
    superjson: (f) => placeOf(f.url) === 'superjson',
    'zod (input and output)': (f) => placeOf(f.url) === 'zod',
    'garbage collection': (f) => f.functionName === '(garbage collector)',
  };
  const self = new Map<string, number>();
  const places = new Map<string, number>();
  const inside = new Map<string, number>();
  let total = 0;
  let time = profile.startTime;
  profile.samples.forEach((id, i) => {
    time += profile.timeDeltas[i] ?? 0;
    const { callFrame } = byId.get(id)!;
    if (time < from || time > to || callFrame.functionName === '(idle)') return;
    total++;
    const key = `${callFrame.functionName || '(anonymous)'} ${placeOf(callFrame.url)}${callFrame.url ? `:${callFrame.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + 1);
    places.set(placeOf(callFrame.url), (places.get(placeOf(callFrame.url)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      for (const [stage, matches] of Object.entries(stages)) {
        if (!seen.has(stage) && matches(byId.get(node)!.callFrame)) seen.add(stage);
      }
    }
    for (const stage of seen) inside.set(stage, (inside.get(stage) ?? 0) + 1);
  });
  const pct = (n: number) => Math.round((n / total) * 1000) / 10;
  const rank = (counts: Map<string, number>, n: number) => [...counts].sort((a, b) => b[1] - a[1]).slice(0, n);
  return {
    samples: total,
    stages: Object.keys(stages).map((stage) => ({ stage, 'inclusive %': pct(inside.get(stage) ?? 0) })),
    places: rank(places, 10).map(([where, n]) => ({ 'self %': pct(n), where })),
    functions: rank(self, top).map(([fn, n]) => ({ 'self %': pct(n), function: fn })),
  };
}

/** A server on a scratch database with one active task, for `run`. */
async function withServer<T>(
  nodeArgs: string[],
  run: (url: string, server: ServerProcess, taskId: string) => Promise<T>,
): Promise<T> {
  return withDatabase(async (url) => {
    const server = await startServerProcess(
      benchServerEnv(url, token),
      nodeArgs,
      // Another build to compare with (a copy of an earlier dist/, say): BENCH_SERVER_MAIN.
      { compiled: true, built: process.env.BENCH_SERVER_MAIN || undefined },
    );
    const agent = await (await new FakeAgent().start()).say(10);
    try {
      const task = await seedTask(createHiatusClient({ url: server.url, token }), agent.url, 'request-path');
      return await run(url, server, task.id);
    } finally {
      await server.stop();
      await agent.stop();
    }
  });
}

export async function requestPath(): Promise<RequestPathFigures> {
  return withServer([], measureRequestPath);
}

/**
 * This build against another (`otherMain`: a copy of an earlier dist/main.mjs, say), both running at
 * once on one database and loaded in alternate turns (A B B A …), so that the machine's drift
 * between two runs does not pass for a difference between the builds. Medians over the turns.
 */
export async function compareBuilds(otherMain: string, turns = Number(process.env.BENCH_TURNS ?? 6)) {
  return withDatabase(async (url) => {
    const start = (built?: string) =>
      startServerProcess(benchServerEnv(url, token), [], { compiled: true, built: built || undefined });
    const builds = { other: await start(otherMain), this: await start() };
    const agent = await (await new FakeAgent().start()).say(10);
    try {
      const task = await seedTask(createHiatusClient({ url: builds.this.url, token }), agent.url, 'compare');
      const auth = { authorization: `Bearer ${token}` };
      const rows: Array<Record<string, unknown>> = [];
      for (const [name, pathAndQuery, headers] of [
        ['info', '/trpc/info', {}],
        ['tasks.get', tasksGetPath(task.id), auth],
      ] as const) {
        type Turn = { perSecond: number; cpu: number };
        const figures: Record<'other' | 'this', Turn[]> = { other: [], this: [] };
        const calls = {
          other: getter(builds.other.url, pathAndQuery, headers),
          this: getter(builds.this.url, pathAndQuery, headers),
        };
        for (const which of ['other', 'this'] as const) await measureLoad(1, concurrency, calls[which]); // warm up
        for (let turn = 0; turn < turns; turn++) {
          const order = turn % 2 === 0 ? (['other', 'this'] as const) : (['this', 'other'] as const);
          for (const which of order) {
            const run = await loadWithCpu(builds[which].pid, calls[which]);
            figures[which].push({ perSecond: run.perSecond, cpu: run.cpuPerCall });
          }
        }
        const median = (values: number[]) =>
          quantile(
            [...values].sort((a, b) => a - b),
            0.5,
          );
        const of = (which: 'other' | 'this') => ({
          perSecond: median(figures[which].map((f) => f.perSecond)),
          cpu: median(figures[which].map((f) => f.cpu)),
        });
        const [other, current] = [of('other'), of('this')];
        rows.push({
          call: name,
          'other req/s': other.perSecond,
          'this req/s': current.perSecond,
          'other CPU µs/call': other.cpu,
          'this CPU µs/call': current.cpu,
          'CPU this ÷ other': Math.round((current.cpu / other.cpu) * 100) / 100,
        });
      }
      return rows;
    } finally {
      await Promise.all([builds.other.stop(), builds.this.stop(), agent.stop()]);
    }
  });
}

/** The monotonic clock in µs, as V8 stamps profile samples. */
const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

/** A CPU profile of the server under the plain tasks.get load alone (warm-up and start-up left out). */
export async function profileTasksGet(procedure: 'tasks.get' | 'info' = 'tasks.get') {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-profile-'));
  try {
    let from = 0;
    let to = 0;
    await withServer([`--cpu-prof`, `--cpu-prof-dir=${dir}`], async (_url, server, taskId) => {
      const call =
        procedure === 'info'
          ? getter(server.url, '/trpc/info', {})
          : getter(server.url, tasksGetPath(taskId), { authorization: `Bearer ${token}` });
      await measureLoad(1, concurrency, call);
      from = monotonicMicros();
      await measureLoad(seconds, concurrency, call);
      to = monotonicMicros();
    });
    const [file] = (await readdir(dir)).filter((name) => name.endsWith('.cpuprofile'));
    if (!file) throw new Error('the server wrote no CPU profile');
    // Kept for a closer look (Chrome DevTools, speedscope): bench/results/tasks-get.cpuprofile.
    await mkdir(resultsDir, { recursive: true });
    await copyFile(path.join(dir, file), path.join(resultsDir, `${procedure.replace('.', '-')}.cpuprofile`));
    return profileSummary(JSON.parse(await readFile(path.join(dir, file), 'utf8')), from, to);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Prints a profile summary's tables. */
export function printProfile(profile: Awaited<ReturnType<typeof profileTasksGet>>): void {
  table(
    `CPU profile of the server under tasks.get (${profile.samples} busy samples): inside each stage`,
    profile.stages,
  );
  table('self time by package', profile.places);
  table('self time by function', profile.functions);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const against = process.argv.indexOf('--against');
  if (against > 0) {
    const other = process.argv[against + 1];
    if (!other) throw new Error("--against needs the other build's main.mjs");
    table(
      `this build against ${other}, alternate turns of ${seconds} s at c=${concurrency}`,
      await compareBuilds(other),
    );
    process.exit(0);
  }
  const figures = await requestPath();
  table(`the request path at c=${concurrency}, plain HTTP against the compiled server on PostgreSQL`, figures.rows);
  if (process.argv.includes('--profile')) {
    printProfile(await profileTasksGet());
  }
}
