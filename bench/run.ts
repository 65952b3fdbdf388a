// pnpm bench: the service against the raw-SQL baseline (through the SDK, and as plain HTTP with the
// server's CPU per call), pause/resume round trips, resume-to-active with the process driver against a
// bare process start, paged logs from a large snapshot, the embedded default, a CPU profile of
// tasks.get, start-up and idle memory, the SDK's build, and (with a Docker Engine) the docker driver's
// cold and hot pauses beside the process driver's; then each performance goal against its
// figure from this run. Prints tables; writes results/latest.json.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { DB } from '../apps/server/src/db/schema.ts';
import { findTaskQuery } from '../apps/server/src/db/tasks.ts';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { dockerReachable, ensureDemoImage } from '../packages/provisioner/src/index.ts';
import { dockerCosts } from './docker.ts';
import { logPages } from './log-pages.ts';
import { measureRequestPath, printProfile, profileTasksGet } from './request-path.ts';
import { sdkBuild } from './sdk-build.ts';
import { startUp, startUpTitle } from './start-up.ts';
import {
  benchServerEnv,
  freePort,
  measureLoad,
  metricSum,
  quantile,
  seedTask,
  table,
  waitFor,
  withDatabase,
  withoutKeyLimits,
} from './support.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
/** Pause + resume rounds of a process-driver task, each followed by one bare start of the same agent. */
const resumeRounds = Number(process.env.BENCH_RESUME_ROUNDS ?? 30);
/** How often the client looks at the task (`tasks.get`) or at a starting agent (`/status`). */
const lookEveryMs = 5;
const demoAgent = path.join(import.meta.dirname, '..', 'packages/provisioner/demo-agent/agent.mjs');
const concurrencies = [1, 16, 64];
const token = `bench-${randomBytes(24).toString('hex')}`;
/** Agents stay up until the end: later phases pause their tasks again. */
const agents: FakeAgent[] = [];
const results: Record<string, unknown> = {
  machine: machine(),
  startedAt: new Date().toISOString(),
  secondsPerRun: seconds,
  resumeRounds,
};

function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

const ms = (n: number) => Math.round(n * 100) / 100;
const mb = (mebibytes: unknown) => Math.round((Number(mebibytes) * 2 ** 20) / 1e6);

/** Figures the goals are checked against, gathered as the run goes. */
const goals: Record<string, number> = {};
/** The floor under the request path, measured in the same run (bench/request-path.ts). */
let floor: { bareTrpc: number; plainHttp: number } | undefined;

function goal(what: string, figure: unknown, target: string, met: (value: number) => boolean) {
  const value = Number(figure);
  return { goal: what, target, 'this run': value, met: Number.isFinite(value) && met(value) ? 'yes' : 'no' };
}

/** Runs `call` from `concurrency` loops for the run's `seconds`; throughput and latency percentiles. */
const load = (concurrency: number, call: () => Promise<unknown>) => measureLoad(seconds, concurrency, call);

async function getVersusRaw(url: string, server: ServerProcess, client: HiatusClient, taskId: string) {
  const pool = new pg.Pool({ connectionString: url, max: 64 });
  const compiled = findTaskQuery(new Kysely<DB>({ dialect: new PostgresDialect({ pool }) }), taskId).compile();
  const raw = () => pool.query(compiled.sql, [...compiled.parameters]);
  const sdk = () => client.tasks.get.query({ id: taskId });
  await load(4, sdk); // warm both paths up
  await load(4, raw);
  const rows = [];
  for (const c of concurrencies) {
    const viaSdk = await load(c, sdk);
    const viaPg = await load(c, raw);
    rows.push({
      concurrency: c,
      'sdk req/s': viaSdk.perSecond,
      'pg req/s': viaPg.perSecond,
      'throughput ratio': Math.round((viaSdk.perSecond / viaPg.perSecond) * 100) / 100,
      'sdk p50 ms': viaSdk.p50,
      'sdk p99 ms': viaSdk.p99,
      'pg p99 ms': viaPg.p99,
      'p99 ratio': Math.round((viaSdk.p99 / viaPg.p99) * 100) / 100,
    });
  }
  await pool.end();
  void server;
  return rows;
}

async function pauseResume(server: ServerProcess, client: HiatusClient, historyBytes: number, rounds: number) {
  const agent = await new FakeAgent().start();
  const messageSize = 4_000;
  agent.say(Math.ceil(historyBytes / (messageSize + 80)), messageSize);
  const task = await seedTask(client, agent.url, `round-trip-${historyBytes}`);
  const pauses: number[] = [];
  const resumes: number[] = [];
  const before = {
    fetch: await metricSum(server, 'hiatus_pause_agent_fetch_seconds_sum'),
    db: await metricSum(server, 'hiatus_pause_db_seconds_sum'),
  };
  let bytes = 0;
  for (let i = 0; i < rounds; i++) {
    let t = performance.now();
    const paused = await client.tasks.pause.mutate({ id: task.id });
    pauses.push(performance.now() - t);
    if (paused.snapshot.taken) bytes = paused.snapshot.bytes;
    await waitFor(client, task.id, 'paused');
    t = performance.now();
    await client.tasks.resume.mutate({ id: task.id });
    resumes.push(performance.now() - t);
    await waitFor(client, task.id, 'active');
  }
  const fetchMs = ((await metricSum(server, 'hiatus_pause_agent_fetch_seconds_sum')) - before.fetch) * 1000;
  const dbMs = ((await metricSum(server, 'hiatus_pause_db_seconds_sum')) - before.db) * 1000;
  const pauseTotal = pauses.reduce((a, b) => a + b, 0);
  pauses.sort((a, b) => a - b);
  resumes.sort((a, b) => a - b);
  agents.push(agent);
  return {
    history: historyBytes >= 2 ** 20 ? `${historyBytes / 2 ** 20} MiB` : `${historyBytes / 1024} KiB`,
    'stored bytes': bytes,
    rounds,
    'pause p50 ms': ms(quantile(pauses, 0.5)),
    'pause p99 ms': ms(quantile(pauses, 0.99)),
    'resume p50 ms': ms(quantile(resumes, 0.5)),
    'resume p99 ms': ms(quantile(resumes, 0.99)),
    'agent fetch %': Math.round((fetchMs / pauseTotal) * 100),
    'database %': Math.round((dbMs / pauseTotal) * 100),
    'service + wire %': Math.round(((pauseTotal - fetchMs - dbMs) / pauseTotal) * 100),
    taskId: task.id,
  };
}

/** Polls `tasks.get` until the task has `status`; fails on `error` or after `timeoutMs`. */
async function taskWith(client: HiatusClient, id: string, status: string, timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const task = await client.tasks.get.query({ id });
    if (task.status === status) return task;
    if (task.status === 'error') throw new Error(`task ${id} failed: ${task.latestBuild?.error}`);
    if (performance.now() > deadline) throw new Error(`task ${id} still ${task.status} after ${timeoutMs} ms`);
    await sleep(lookEveryMs);
  }
}

/** True when `GET <agentUrl>/status` answers 200 with an AgentAPI status in JSON. */
async function agentAnswers(agentUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${agentUrl}/status`);
    const body = (await response.json()) as { status?: unknown } | null;
    return response.status === 200 && typeof body?.status === 'string';
  } catch {
    return false;
  }
}

async function untilAgentAnswers(agentUrl: string, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await agentAnswers(agentUrl))) {
    if (performance.now() > deadline) throw new Error(`${agentUrl}/status did not answer within ${timeoutMs} ms`);
    await sleep(lookEveryMs);
  }
}

/** The baseline: ms from spawning the demo agent directly until its `/status` answers; then it is stopped. */
async function bareStart(): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [demoAgent], {
    env: { ...process.env, PORT: String(port), HIATUS_PROMPT: 'bench' },
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await untilAgentAnswers(`http://127.0.0.1:${port}`);
    return performance.now() - started;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

/**
 * Resume-to-active with the process driver: from `tasks.resume` until the new agent answers
 * `/status` at the task's new `agentUrl`, round after round, each round followed by one bare start of
 * the same agent so both see the same load. The template has no pre-pause notice: pauses stay short.
 */
async function resumeToActive(client: HiatusClient, rounds: number) {
  const phaseStarted = performance.now();
  await client.templates.create.mutate({
    name: 'bench-demo',
    driver: 'process',
    settings: { command: [process.execPath, demoAgent] },
  });
  const { task } = await client.tasks.create.mutate({
    name: 'resume-to-active',
    prompt: 'bench',
    template: 'bench-demo',
  });
  const pauses: number[] = [];
  const resumes: number[] = [];
  const bare: number[] = [];
  /** Of each resume, the start build's run in the driver (spawn, then polling `/status`), by the server's clock. */
  const inDriver: number[] = [];
  try {
    await untilAgentAnswers((await taskWith(client, task.id, 'active')).agentUrl!);
    await bareStart(); // warm the file cache up
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      await client.tasks.pause.mutate({ id: task.id });
      await taskWith(client, task.id, 'paused');
      pauses.push(performance.now() - t);
      t = performance.now();
      await client.tasks.resume.mutate({ id: task.id });
      const active = await taskWith(client, task.id, 'active');
      if (!(await agentAnswers(active.agentUrl!))) await untilAgentAnswers(active.agentUrl!);
      resumes.push(performance.now() - t);
      const build = active.latestBuild;
      if (build?.startedAt && build.completedAt) inDriver.push(build.completedAt.getTime() - build.startedAt.getTime());
      bare.push(await bareStart());
    }
  } finally {
    // Stop the agent: the server's shutdown leaves a driver's agents running.
    await client.tasks.pause
      .mutate({ id: task.id })
      .then(() => taskWith(client, task.id, 'paused'))
      .catch(() => undefined);
  }
  const spread = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50: ms(quantile(sorted, 0.5)), p99: ms(quantile(sorted, 0.99)) };
  };
  const resume = spread(resumes);
  const baseline = spread(bare);
  return {
    driver: 'process',
    rounds,
    resumeToActive: resume,
    bareStart: baseline,
    ratio: {
      p50: Math.round((resume.p50 / baseline.p50) * 100) / 100,
      p99: Math.round((resume.p99 / baseline.p99) * 100) / 100,
    },
    startBuildInDriver: spread(inDriver),
    pauseToPaused: spread(pauses),
    seconds: Math.round((performance.now() - phaseStarted) / 1000),
  };
}

async function main() {
  const provisionerDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-bench-provisioner-'));
  await withDatabase(async (url) => {
    // The built server, as `pnpm start` runs it.
    const server = await startServerProcess(
      { ...benchServerEnv(url, token), HIATUS_PROVISIONER_POLL_MS: '50', HIATUS_PROVISIONER_DIR: provisionerDir },
      [],
      { compiled: true },
    );
    const client = createHiatusClient({ url: server.url, token });
    const agent = await (await new FakeAgent().start()).say(10);
    try {
      const task = await seedTask(client, agent.url, 'get-bench');
      const get = await getVersusRaw(url, server, client, task.id);
      results.tasksGet = get;
      table('tasks.get through the SDK vs the same SQL through pg (PostgreSQL on loopback)', get);

      const requests = await measureRequestPath(url, server, task.id, token);
      results.requestPath = requests;
      Object.assign(goals, {
        tasksGetRatio: requests.tasksGetRatio,
        tasksGetCpu: requests.tasksGetCpuMicros,
        infoCpu: requests.infoCpuMicros,
      });
      floor = requests.floorCpuMicros;
      table(
        `the request path at c=${requests.concurrency}: plain HTTP, one call a request, with the server's CPU per call`,
        requests.rows,
      );

      const roundTrips = [
        await pauseResume(server, client, 100 * 1024, 30),
        await pauseResume(server, client, 10 * 2 ** 20, 5),
      ];
      results.pauseResume = roundTrips;
      table(
        'pause + resume round trip',
        roundTrips.map(({ taskId, ...row }) => row),
      );

      const started = await resumeToActive(client, resumeRounds);
      results.resumeToActive = started;
      table(
        `resume to active with the process driver (${started.rounds} rounds in ${started.seconds} s), against a bare start`,
        [
          {
            measure: 'tasks.resume → new agent answers /status',
            'p50 ms': started.resumeToActive.p50,
            'p99 ms': started.resumeToActive.p99,
            'p50 × bare': started.ratio.p50,
            'p99 × bare': started.ratio.p99,
          },
          {
            measure: '  of which the start build in the driver',
            'p50 ms': started.startBuildInDriver.p50,
            'p99 ms': started.startBuildInDriver.p99,
          },
          { measure: 'bare spawn → /status', 'p50 ms': started.bareStart.p50, 'p99 ms': started.bareStart.p99 },
          { measure: 'pause → paused', 'p50 ms': started.pauseToPaused.p50, 'p99 ms': started.pauseToPaused.p99 },
        ],
      );

      const logs = await logPages(server, client);
      results.logs = logs;
      goals.logPagesRatio = logs.ratio;
      table(
        `tasks.logs of a paused task, page by page (${logs.pageSize} messages a page): the largest snapshot allowed against 1 MiB`,
        logs.rows,
      );
      console.log(`pages/s at ${logs.rows[1]!.snapshot} ÷ pages/s at 1 MiB: ${logs.ratio}`);

      // Docker, where an Engine answers: the docker driver's cold and hot pauses beside the process driver's.
      const engine = await dockerReachable();
      if (engine.reachable) {
        await ensureDemoImage();
        const docker = await dockerCosts(client);
        results.docker = docker;
        table(`pause and resume by driver, ${docker.rounds} rounds of each kind, interleaved`, docker.rows);
        table(`${docker.together} paused tasks resumed at once`, docker.atOnce);
      } else console.log(`the docker driver is not measured: ${engine.why}`);
    } finally {
      await Promise.all([agent, ...agents].map((a) => a.stop()));
      await server.stop();
    }
  });

  // The embedded default, for the record.
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-bench-pglite-'));
  const embedded = await startServerProcess({
    DATABASE_URL: '',
    HIATUS_DATA_DIR: dataDir,
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    // Not the repository's own directory: a provisioner's start stops the agents it finds there.
    HIATUS_PROVISIONER_DIR: provisionerDir,
    ...withoutKeyLimits,
  });
  const agent = await (await new FakeAgent().start()).say(10);
  try {
    const client = createHiatusClient({ url: embedded.url, token });
    const task = await seedTask(client, agent.url, 'get-bench');
    const rows = [];
    for (const c of concurrencies)
      rows.push({ concurrency: c, ...(await load(c, () => client.tasks.get.query({ id: task.id }))) });
    results.pgliteTasksGet = rows;
    table('tasks.get through the SDK on the embedded PGlite', rows);
  } finally {
    await agent.stop();
    await embedded.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(provisionerDir, { recursive: true, force: true });
  }

  const profile = await profileTasksGet();
  results.tasksGetProfile = profile;
  printProfile(profile);

  const starts = await startUp(3);
  results.startUp = starts;
  table(startUpTitle(3), starts);

  const build = await sdkBuild();
  results.sdkBuild = build;
  table('the SDK build from a clean state (pnpm --filter @hiatus/client build)', [build]);

  const startRow = (start: string, how = 'built') => starts.find((row) => row.start === start && row.how === how)!;
  const goalRows = [
    goal('tasks.get ÷ raw pg, plain HTTP, c=16', goals.tasksGetRatio, '≥ 0.67', (v) => v >= 0.67),
    goal('server CPU per tasks.get, µs', goals.tasksGetCpu, '≤ 400', (v) => v <= 400),
    goal('server CPU per info, µs', goals.infoCpu, '≤ 100', (v) => v <= 100),
    goal(
      'ready on migrated PostgreSQL, ms',
      startRow('PostgreSQL, migrated')['ready p50 ms'],
      '< 1000',
      (v) => v < 1000,
    ),
    goal('ready on migrated PGlite, ms', startRow('PGlite, migrated')['ready p50 ms'], '< 1000', (v) => v < 1000),
    goal(
      'ready on a fresh PGlite folder, ms',
      startRow('PGlite, fresh folder')['ready p50 ms'],
      '< 3000',
      (v) => v < 3000,
    ),
    goal(
      'idle RSS on PostgreSQL, MB',
      mb(startRow('PostgreSQL, migrated')['idle RSS p50 MiB']),
      '< 120',
      (v) => v < 120,
    ),
    goal('idle RSS on PGlite, MB', mb(startRow('PGlite, migrated')['idle RSS p50 MiB']), 'stated', () => true),
    goal('SDK build, s', build.wallSeconds, '< 10', (v) => v < 10),
    goal('SDK build peak RSS, MB', build.peakRssMB, '< 500', (v) => v < 500),
    goal('log pages/s at 32 MiB ÷ at 1 MiB', goals.logPagesRatio, '≥ 0.8', (v) => v >= 0.8),
  ];
  results.goals = goalRows;
  table('the performance goals (issue 17), each against its figure from this run', goalRows);
  if (floor) {
    console.log(
      `the floor under info in this run: ${floor.bareTrpc} µs of CPU a call for a bare tRPC router through the same adapter, ${floor.plainHttp} µs for plain node:http`,
    );
  }

  const out = path.join(import.meta.dirname, 'results', 'latest.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
}

await main();
process.exit(0);
