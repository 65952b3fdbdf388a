// The figures behind docs/scale.md: what a pause, a resume and an auto-pause check cost PostgreSQL
// (statements, rows written per table, WAL bytes, bytes kept), the background work of an idle server
// process, its connections, and events committed per second with 16 concurrent creators.
//
// It runs its own PostgreSQL cluster (initdb into a temporary directory, pg_stat_statements loaded,
// stock settings otherwise), so WAL and statement counts are this workload's alone, not those of
// whatever else shares the machine's PostgreSQL. `npx tsx bench/scale-figures.ts`; needs the
// PostgreSQL server binaries (`pg_config --bindir`), and `runuser` when run as root.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { clusterFolder } from '../apps/server/test/private-postgres.ts';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { freePort, prose, table } from './support.ts';

const run = promisify(execFile);
/** Tasks paused and resumed in each measured round (one round per history size). */
const rounds = Number(process.env.SCALE_ROUNDS ?? 20);
const createSeconds = Number(process.env.SCALE_CREATE_SECONDS ?? 5);
const creators = 16;
/** Active tasks whose agents the auto-pause pass checks (once reporting `running`, once `stable`). */
const checkedTasks = Number(process.env.SCALE_CHECKED_TASKS ?? 50);
const checkSeconds = Number(process.env.SCALE_CHECK_SECONDS ?? 8);
const token = `scale-${randomBytes(24).toString('hex')}`;
const observer = 'scale_observer';

type Cluster = { url: (database: string, user?: string) => string; stop(): Promise<void> };

/** A PostgreSQL cluster of this run's own, with pg_stat_statements; removed by stop(). */
async function privateCluster(): Promise<Cluster> {
  const bin = (await run('pg_config', ['--bindir'])).stdout.trim();
  const { dir, as } = await clusterFolder('hiatus-scale-', bin);
  const data = path.join(dir, 'data');
  const port = await freePort();
  await as('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync']);
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    '-c shared_preload_libraries=pg_stat_statements',
    '-c pg_stat_statements.track=all',
    '-c pg_stat_statements.max=5000',
  ].join(' ');
  await as('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-o', options, 'start']);
  const url = (database: string, user = 'postgres') => `postgres://${user}@127.0.0.1:${port}/${database}`;
  return {
    url,
    async stop() {
      await as('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A statement of pg_stat_statements: `toplevel` false for those run inside another (foreign-key checks, triggers). */
type Statement = { query: string; toplevel: boolean; calls: number; rows: number; walBytes: number };
const statementKey = (s: Statement) => `${s.toplevel}:${s.query}`;
type TableWrites = { inserted: number; updated: number; hot: number; deleted: number };
type Reading = {
  at: number;
  lsn: string;
  wal: { records: number; fpi: number };
  statements: Map<string, Statement>;
  tables: Map<string, TableWrites>;
};

/** What the server's own role (postgres) did in the hiatus database so far, and where WAL is. */
async function read(db: pg.Client): Promise<Reading> {
  // A backend flushes its table counters at most once a second while busy, and an idle one within
  // 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL); pg_stat_statements and the WAL position are at once.
  await sleep(11_000);
  await db.query('SELECT pg_stat_clear_snapshot()');
  const statements = await db.query<Statement>(`
    SELECT query, toplevel, calls::float8 AS calls, rows::float8 AS rows, wal_bytes::float8 AS "walBytes"
    FROM pg_stat_statements
    WHERE userid = 'postgres'::regrole AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`);
  // TOAST tables count under the table they belong to.
  const tables = await db.query<TableWrites & { name: string }>(`
    SELECT coalesce(owner.relname, s.relname) AS name,
      sum(s.n_tup_ins)::float8 AS inserted, sum(s.n_tup_upd)::float8 AS updated,
      sum(s.n_tup_hot_upd)::float8 AS hot, sum(s.n_tup_del)::float8 AS deleted
    FROM pg_stat_all_tables s
    LEFT JOIN pg_class owner ON owner.reltoastrelid = s.relid
    WHERE s.schemaname IN ('public', 'pg_toast')
    GROUP BY 1`);
  const lsn = (await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  // The cluster is this run's own: its WAL is this workload's.
  const wal = await db.query<{ records: number; fpi: number }>(
    'SELECT wal_records::float8 AS records, wal_fpi::float8 AS fpi FROM pg_stat_wal',
  );
  return {
    at: performance.now(),
    lsn,
    wal: wal.rows[0]!,
    statements: new Map(statements.rows.map((s) => [statementKey(s), s])),
    tables: new Map(tables.rows.map(({ name, ...t }) => [name, t])),
  };
}

type Delta = {
  seconds: number;
  walBytes: number;
  walRecords: number;
  walFullPages: number;
  statements: Statement[];
  tables: Array<TableWrites & { name: string }>;
};

async function delta(db: pg.Client, before: Reading, after: Reading): Promise<Delta> {
  const wal = await db.query<{ bytes: number }>('SELECT pg_wal_lsn_diff($1, $2)::float8 AS bytes', [
    after.lsn,
    before.lsn,
  ]);
  const statements = [...after.statements.values()].map((s) => {
    const b = before.statements.get(statementKey(s));
    return {
      query: s.query,
      toplevel: s.toplevel,
      calls: s.calls - (b?.calls ?? 0),
      rows: s.rows - (b?.rows ?? 0),
      walBytes: s.walBytes - (b?.walBytes ?? 0),
    };
  });
  const tables = [...after.tables.entries()].map(([name, t]) => {
    const b = before.tables.get(name);
    return {
      name,
      inserted: t.inserted - (b?.inserted ?? 0),
      updated: t.updated - (b?.updated ?? 0),
      hot: t.hot - (b?.hot ?? 0),
      deleted: t.deleted - (b?.deleted ?? 0),
    };
  });
  return {
    seconds: (after.at - before.at) / 1000,
    walBytes: wal.rows[0]!.bytes,
    walRecords: after.wal.records - before.wal.records,
    walFullPages: after.wal.fpi - before.wal.fpi,
    statements: statements.filter((s) => s.calls > 0),
    tables: tables.filter((t) => t.inserted + t.updated + t.deleted > 0),
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const kind = (query: string) => {
  const q = query.trim().toLowerCase();
  if (q.includes('pg_advisory_xact_lock')) return 'advisory lock';
  if (q.includes('pg_notify')) return 'notify';
  if (/^select\b[\s\S]*\bfor (no key )?update\b/.test(q)) return 'select for update';
  return q.split(/\s+/)[0] ?? '';
};

/**
 * One operation's cost, per operation. `idle` is the background (the loops of an idle process),
 * subtracted statement by statement at its rate. Statements are those the server sent; `nested`
 * are those PostgreSQL ran inside them (foreign-key checks, the build-number trigger).
 */
function perOperation(d: Delta, count: number, idle: Delta) {
  const share = d.seconds / idle.seconds;
  const idleCalls = new Map(idle.statements.map((s) => [statementKey(s), s.calls * share]));
  const calls = d.statements.map((s) => ({ ...s, calls: s.calls - (idleCalls.get(statementKey(s)) ?? 0) }));
  const sent = calls.filter((s) => s.toplevel);
  const byKind = new Map<string, number>();
  for (const s of sent) byKind.set(kind(s.query), (byKind.get(kind(s.query)) ?? 0) + s.calls);
  const top = calls
    .map((s) => ({
      'calls / op': round1(s.calls / count),
      'WAL bytes / op': Math.round(s.walBytes / count),
      nested: !s.toplevel,
      query: s.query.replace(/\s+/g, ' ').slice(0, 100),
    }))
    .filter((s) => s['calls / op'] >= 0.3)
    .sort((a, b) => b['calls / op'] - a['calls / op']);
  return {
    statements: round1(sum(sent.map((s) => s.calls)) / count),
    transactions: round1((byKind.get('commit') ?? 0) / count),
    nested: round1(sum(calls.filter((s) => !s.toplevel).map((s) => s.calls)) / count),
    byKind: Object.fromEntries(
      [...byKind].filter(([, n]) => n / count >= 0.05).map(([k, n]) => [k, round1(n / count)]),
    ),
    rowsWritten: round1(sum(d.tables.map((t) => t.inserted + t.updated + t.deleted)) / count),
    tables: Object.fromEntries(
      d.tables.map((t) => [
        t.name,
        `+${round1(t.inserted / count)} ~${round1(t.updated / count)} (hot ${round1(t.hot / count)}) -${round1(t.deleted / count)}`,
      ]),
    ),
    walBytes: Math.round((d.walBytes - idle.walBytes * share) / count),
    walRecords: round1((d.walRecords - idle.walRecords * share) / count),
    walFullPages: round1((d.walFullPages - idle.walFullPages * share) / count),
    top,
  };
}

async function agentWith(historyBytes: number): Promise<FakeAgent> {
  const agent = await new FakeAgent().start();
  const size = 4_000;
  agent.say(Math.max(1, Math.round(historyBytes / (size + 100))), size);
  for (const message of agent.messages) message.content = prose(size);
  return agent;
}

/** Waits until the task's latest build is a `transition` that succeeded (read by the observer). */
async function untilBuilt(db: pg.Client, taskId: string, transition: string): Promise<void> {
  const deadline = performance.now() + 120_000;
  for (;;) {
    const { rows } = await db.query<{ transition: string; job_status: string }>(
      `SELECT b.transition, b.job_status FROM tasks t JOIN workspace_builds b ON b.workspace_id = t.workspace_id
       WHERE t.id = $1 ORDER BY b.build_number DESC LIMIT 1`,
      [taskId],
    );
    const build = rows[0];
    if (build?.transition === transition && build.job_status === 'succeeded') return;
    if (build?.job_status === 'failed') throw new Error(`task ${taskId}: its ${build.transition} build failed`);
    if (performance.now() > deadline) throw new Error(`task ${taskId}: no ${transition} within 120 s`);
    await sleep(5);
  }
}

async function createTasks(client: HiatusClient, db: pg.Client, agentUrl: string, label: string, n: number) {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const { task } = await client.tasks.create.mutate({
      name: `${label}-${i}`,
      prompt: 'scale',
      agentUrl,
      sendPrompt: false,
    });
    await untilBuilt(db, task.id, 'start');
    ids.push(task.id);
  }
  return ids;
}

/** Pauses then resumes `rounds` tasks whose agent holds `historyBytes`, measuring each half. */
async function pauseAndResume(client: HiatusClient, db: pg.Client, idle: Delta, historyBytes: number) {
  const agent = await agentWith(historyBytes);
  const label = historyBytes >= 2 ** 20 ? `${historyBytes / 2 ** 20} MiB` : `${historyBytes / 1024} KiB`;
  try {
    const ids = await createTasks(client, db, agent.url, `t${historyBytes}`, rounds);
    const size = async () =>
      (
        await db.query<{ bytes: number }>(`
          SELECT (pg_total_relation_size('task_snapshots') + pg_total_relation_size('task_snapshot_pages')
            + pg_total_relation_size('task_snapshot_stats'))::float8 AS bytes`)
      ).rows[0]!.bytes;
    let storedBytes = 0;
    const pauseAll = async () => {
      for (const id of ids) {
        const paused = await client.tasks.pause.mutate({ id });
        if (!paused.snapshot.taken) throw new Error(`no snapshot: ${paused.snapshot.reason}`);
        storedBytes = paused.snapshot.bytes;
        await untilBuilt(db, id, 'stop');
      }
    };
    const sizeBefore = await size();
    let before = await read(db);
    await pauseAll();
    const pausedAt = await read(db);
    const pause = perOperation(await delta(db, before, pausedAt), rounds, idle);
    // What a paused task keeps: its snapshot, the snapshot's pages and stats (heap, TOAST, indexes).
    const kept = (await size()) - sizeBefore;
    before = pausedAt;
    for (const id of ids) {
      await client.tasks.resume.mutate({ id });
      await untilBuilt(db, id, 'start');
    }
    const resumedAt = await read(db);
    const resume = perOperation(await delta(db, before, resumedAt), rounds, idle);
    // A second pause replaces the first snapshot: its old pages are deleted in the same transaction.
    await pauseAll();
    const repause = perOperation(await delta(db, resumedAt, await read(db)), rounds, idle);
    return {
      label,
      historyBytes: sum(agent.messages.map((m) => m.content.length)),
      storedBytes,
      keptBytesPerTask: Math.round(kept / rounds),
      pause,
      resume,
      repause,
    };
  } finally {
    await agent.stop();
  }
}

/** 16 loops creating tasks for `createSeconds`: tasks and events committed per second, lock waits. */
async function eventsPerSecond(client: HiatusClient, db: pg.Client, agentUrl: string) {
  const count = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM task_events')).rows[0]!.n);
  const eventsBefore = await count();
  let created = 0;
  let waiting = 0;
  let samples = 0;
  let connections = 0;
  const until = performance.now() + createSeconds * 1000;
  const sampler = (async () => {
    while (performance.now() < until) {
      const { rows } = await db.query<{ waiting: number; connections: number }>(`
        SELECT (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND NOT granted) AS waiting,
          (SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND usename = 'postgres') AS connections`);
      waiting += rows[0]!.waiting;
      connections = Math.max(connections, rows[0]!.connections);
      samples++;
      await sleep(20);
    }
  })();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: creators }, async (_, loop) => {
      for (let i = 0; performance.now() < until; i++) {
        await client.tasks.create.mutate({ name: `c${loop}-${i}`, prompt: 'scale', agentUrl, sendPrompt: false });
        created++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await sampler;
  const events = (await count()) - eventsBefore;
  return {
    creators,
    seconds: round1(seconds),
    'tasks created / s': Math.round(created / seconds),
    'events committed / s': Math.round(events / seconds),
    'events per creation': round1(events / created),
    'mean transactions waiting for the events lock': round1(waiting / samples),
    'peak server connections': connections,
  };
}

/** A counter's value summed over all its label sets (support.ts `metricSum` reads the first only). */
async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const values = text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .map((l) => Number(l.split(' ').at(-1)));
  return values.length ? sum(values) : Number.NaN;
}

/**
 * Auto-pause checks of agents that report `status` (none is idle long enough to be paused), on a
 * database of their own so that only these tasks are active: cost per check, from the pass's counter.
 */
async function autoPauseChecks(cluster: Cluster, idle: Delta, status: 'running' | 'stable') {
  const database = `checks_${status}`;
  const server = await startServerProcess(serverEnv(cluster.url(database), { HIATUS_AUTO_PAUSE_INTERVAL_MS: '1000' }));
  const db = new pg.Client({ connectionString: cluster.url(database, observer) });
  const agent = await new FakeAgent().start();
  agent.status = status;
  try {
    await db.connect();
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    const client = createHiatusClient({ url: server.url, token });
    await createTasks(client, db, agent.url, 'checked', checkedTasks);
    const before = await read(db);
    const checksBefore = await metric(server, 'hiatus_auto_pause_checks_total');
    await sleep(checkSeconds * 1000);
    const after = await read(db);
    const checks = (await metric(server, 'hiatus_auto_pause_checks_total')) - checksBefore;
    const d = await delta(db, before, after);
    return {
      agents: status,
      activeTasks: checkedTasks,
      intervalMs: 1000,
      seconds: round1(d.seconds),
      checks,
      'checks / s': round1(checks / d.seconds),
      perCheck: perOperation(d, checks, idle),
    };
  } finally {
    await server.stop();
    await agent.stop();
    await db.end();
  }
}

function serverEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: url,
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    HIATUS_RATE_LIMIT_PER_SECOND: '0',
    HIATUS_MAX_CONCURRENT_CALLS_PER_KEY: '64',
    HIATUS_KEY_CACHE_MS: '60000',
    ...extra,
  };
}

function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg().map(round1),
    node: process.version,
  };
}

const cluster = await privateCluster();
const results: Record<string, unknown> = { machine: machine(), startedAt: new Date().toISOString() };
try {
  const admin = new pg.Client({ connectionString: cluster.url('postgres') });
  await admin.connect();
  await admin.query(`CREATE ROLE ${observer} SUPERUSER LOGIN`);
  results.postgres = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
  await admin.end();
  const url = cluster.url('hiatus');
  const server = await startServerProcess(serverEnv(url));
  const db = new pg.Client({ connectionString: cluster.url('hiatus', observer) });
  await db.connect();
  await db.query('CREATE EXTENSION pg_stat_statements');
  try {
    const client = createHiatusClient({ url: server.url, token });
    await client.tasks.list.query({}); // the key is verified and cached from here on
    await sleep(3_000);
    const quietFrom = await read(db);
    await sleep(10_000);
    const idle = await delta(db, quietFrom, await read(db));
    results.idle = {
      seconds: round1(idle.seconds),
      'statements / s': round1(sum(idle.statements.map((s) => s.calls)) / idle.seconds),
      'rows written / s': round1(sum(idle.tables.map((t) => t.inserted + t.updated + t.deleted)) / idle.seconds),
      'WAL bytes / s': Math.round(idle.walBytes / idle.seconds),
      statements: idle.statements.map((s) => ({ calls: s.calls, query: s.query.replace(/\s+/g, ' ').slice(0, 100) })),
    };
    table(
      'An idle server process (auto-pause off): background statements',
      idle.statements.map((s) => ({ calls: s.calls, query: s.query.replace(/\s+/g, ' ').slice(0, 90) })),
    );

    const sizes = [];
    for (const historyBytes of [100 * 1024, 2 ** 20]) sizes.push(await pauseAndResume(client, db, idle, historyBytes));
    results.pauseResume = sizes;
    table(
      `Per pause and per resume (${rounds} of each, external agents)`,
      sizes.flatMap((s) => [
        {
          history: s.label,
          op: 'pause',
          'history bytes': s.historyBytes,
          'snapshot bytes': s.storedBytes,
          'kept bytes / task': s.keptBytesPerTask,
          statements: s.pause.statements,
          transactions: s.pause.transactions,
          nested: s.pause.nested,
          'rows written': s.pause.rowsWritten,
          'WAL bytes': s.pause.walBytes,
          'WAL records': s.pause.walRecords,
          'full pages': s.pause.walFullPages,
        },
        {
          history: s.label,
          op: 'pause again',
          statements: s.repause.statements,
          transactions: s.repause.transactions,
          nested: s.repause.nested,
          'rows written': s.repause.rowsWritten,
          'WAL bytes': s.repause.walBytes,
          'WAL records': s.repause.walRecords,
          'full pages': s.repause.walFullPages,
        },
        {
          history: s.label,
          op: 'resume',
          statements: s.resume.statements,
          transactions: s.resume.transactions,
          nested: s.resume.nested,
          'rows written': s.resume.rowsWritten,
          'WAL bytes': s.resume.walBytes,
          'WAL records': s.resume.walRecords,
          'full pages': s.resume.walFullPages,
        },
      ]),
    );
    for (const s of sizes) {
      for (const [op, cost] of [
        ['pause', s.pause],
        ['resume', s.resume],
        ['pause again', s.repause],
      ] as const) {
        console.log(
          `\n${s.label} ${op}: statements by kind`,
          cost.byKind,
          '\nrows by table (+ins ~upd -del)',
          cost.tables,
        );
        table(`${s.label} ${op}: statements (background subtracted)`, cost.top);
      }
    }

    const agent = await new FakeAgent().start();
    try {
      results.events = await eventsPerSecond(client, db, agent.url);
    } finally {
      await agent.stop();
    }
    table(`Events with ${creators} concurrent creators`, [results.events as Record<string, unknown>]);
    results.connections = {
      'DATABASE_POOL_SIZE (default)': 10,
      'observed peak for one process (pool + LISTEN)': (results.events as { 'peak server connections': number })[
        'peak server connections'
      ],
      max_connections: Number(
        (await db.query<{ v: string }>("SELECT current_setting('max_connections') AS v")).rows[0]!.v,
      ),
    };
    await server.stop();

    const checkRuns: unknown[] = [];
    for (const status of ['running', 'stable'] as const) {
      try {
        const checks = await autoPauseChecks(cluster, idle, status);
        checkRuns.push(checks);
        const { perCheck, ...pass } = checks;
        table(`Auto-pause checks, agents ${status} (none paused)`, [pass]);
        const { top, ...cost } = perCheck;
        console.log('per check', cost);
        table('per check: statements', top);
      } catch (error) {
        checkRuns.push({ agents: status, error: String(error) });
        console.log(`auto-pause checks (${status}) not measured:`, String(error));
      }
    }
    results.autoPause = checkRuns;
  } finally {
    await server.stop();
    await db.end();
  }
  console.log(`\nAll figures (JSON):\n${JSON.stringify(results, null, 2)}`);
} finally {
  await cluster.stop();
}
