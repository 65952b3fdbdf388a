// pnpm bench:scale (not in CI): a simulation at scale. SIM_TASKS tasks (100,000) of which
// SIM_ACTIVE (10,000) are active behind fake agents (one loopback server answering for all of
// them under /agents/<n>), three server processes on one PostgreSQL. Measures: agent status
// requests per agent per interval and the auto-pause pass time (its metric), tasks.get and
// tasks.list p99 while the passes run, and pause throughput. Writes bench/results/scale.json.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { openDatabase } from '../apps/server/src/db/connection.ts';
import { migrateToLatest } from '../apps/server/src/db/migrate.ts';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient } from '../packages/client/src/index.ts';
import { measureLoad, metricSum, table, withDatabase } from './support.ts';

const tasks = Number(process.env.SIM_TASKS ?? 100_000);
const active = Number(process.env.SIM_ACTIVE ?? 10_000);
const intervalMs = Number(process.env.SIM_INTERVAL_MS ?? 10_000);
const processes = 3;
const token = `bench-${randomBytes(24).toString('hex')}`;

/** Status requests per agent, counted as they arrive. */
const polls = new Uint32Array(active);
const farm = http.createServer((req, res) => {
  const match = /^\/agents\/(\d+)\/(status|messages)$/.exec(req.url ?? '');
  if (!match) return void res.writeHead(404).end();
  if (match[2] === 'status') polls[Number(match[1])]! += 1;
  const body = match[2] === 'status' ? '{"status":"stable","agent_type":"claude"}' : '{"messages":[]}';
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
});

/** Agent status requests and auto-pause passes (their metric, all processes) while `during` runs. */
async function measurePasses(servers: ServerProcess[], during: () => Promise<unknown>) {
  const passes = () =>
    Promise.all(
      servers.map(async (s) => ({
        sum: await metricSum(s, 'hiatus_auto_pause_pass_seconds_sum'),
        count: await metricSum(s, 'hiatus_auto_pause_pass_seconds_count'),
      })),
    );
  const before = { polls: polls.reduce((a, b) => a + b, 0), at: performance.now(), passes: await passes() };
  await during();
  const measured = (performance.now() - before.at) / intervalMs;
  const requests = polls.reduce((a, b) => a + b, 0) - before.polls;
  const after = await passes();
  const seconds = after.reduce((a, p, i) => a + p.sum - before.passes[i]!.sum, 0);
  const count = after.reduce((a, p, i) => a + p.count - before.passes[i]!.count, 0);
  return {
    'intervals measured': Math.round(measured * 10) / 10,
    'status requests': requests,
    'per agent per interval': Math.round((requests / active / measured) * 1000) / 1000,
    'passes (all processes)': count,
    'mean pass s': Math.round((seconds / Math.max(1, count)) * 1000) / 1000,
  };
}

await new Promise<void>((resolve) => farm.listen(0, '127.0.0.1', resolve));
const farmUrl = `http://127.0.0.1:${(farm.address() as AddressInfo).port}`;
const results: Record<string, unknown> = { tasks, active, intervalMs, processes };
await withDatabase(async (url) => {
  // Seeded in SQL: 100,000 tasks through the API would take longer than the run itself.
  const seeding = performance.now();
  const handle = openDatabase({ kind: 'postgres', url, poolSize: 2 });
  await migrateToLatest(handle.db);
  const owner = await sql<{ id: string }>`INSERT INTO users (username) VALUES ('sim') RETURNING id`.execute(handle.db);
  const ownerId = owner.rows[0]!.id;
  await sql`
    WITH ws AS (
      INSERT INTO workspaces (owner_id, name)
      SELECT ${ownerId}, 'sim-' || g FROM generate_series(0, ${tasks - 1}) g RETURNING id, name
    )
    INSERT INTO tasks (owner_id, workspace_id, name, prompt, agent_url, idle_timeout_seconds)
    SELECT ${ownerId}, ws.id, ws.name, 'simulated', ${farmUrl} || '/agents/' || substr(ws.name, 5), 86400 FROM ws`.execute(
    handle.db,
  );
  await sql`
    INSERT INTO workspace_builds (workspace_id, build_number, transition, reason, job_status, started_at, completed_at)
    SELECT id, 1, 'start', 'initiator', 'succeeded', NOW(), NOW() FROM workspaces`.execute(handle.db);
  await sql`
    INSERT INTO workspace_builds (workspace_id, build_number, transition, reason, job_status, started_at, completed_at)
    SELECT w.id, 2, 'stop', 'task_manual_pause', 'succeeded', NOW(), NOW()
    FROM workspaces w WHERE substr(w.name, 5)::int >= ${active}`.execute(handle.db);
  await sql`ANALYZE`.execute(handle.db);
  await handle.close();
  results.seedSeconds = Math.round((performance.now() - seeding) / 100) / 10;

  const env = {
    DATABASE_URL: url,
    HIATUS_ADMIN_TOKEN: token,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: String(intervalMs),
    HIATUS_AUTO_PAUSE_WARNING_SECONDS: '0',
    HIATUS_RATE_LIMIT_PER_SECOND: '0',
    HIATUS_MAX_CONCURRENT_CALLS_PER_KEY: '1000',
  };
  const servers = await Promise.all(Array.from({ length: processes }, () => startServerProcess(env)));
  try {
    // One interval to warm up; then the passes alone for three intervals, then again under API load.
    await sleep(intervalMs);
    const clients = servers.map((s) => createHiatusClient({ url: s.url, token }));
    const ids = (await clients[0]!.tasks.list.query({ status: 'active', limit: 100 })).items.map((t) => t.id);
    let get: Awaited<ReturnType<typeof measureLoad>> | undefined;
    let list: Awaited<ReturnType<typeof measureLoad>> | undefined;
    const quiet = await measurePasses(servers, async () => sleep(3 * intervalMs));
    const loaded = await measurePasses(servers, async () => {
      get = await measureLoad((3 * intervalMs) / 1000 / 2, 16, () =>
        clients[Math.floor(Math.random() * processes)]!.tasks.get.query({
          id: ids[Math.floor(Math.random() * ids.length)]!,
        }),
      );
      list = await measureLoad((3 * intervalMs) / 1000 / 2, 16, () =>
        clients[Math.floor(Math.random() * processes)]!.tasks.list.query({ limit: 50 }),
      );
    });
    results.autoPause = [
      { while: 'nothing else', ...quiet },
      { while: 'tasks.get and tasks.list at 16 concurrent calls', ...loaded },
    ];
    results.tasksGet = get;
    results.tasksList = list;

    // Pause throughput: 1,000 active tasks, 16 at a time, until every one is paused.
    const toPause: string[] = [];
    let cursor: string | undefined;
    while (toPause.length < 1000) {
      const page = await clients[0]!.tasks.list.query({ status: 'active', limit: 200, cursor });
      toPause.push(...page.items.map((t) => t.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    const pausing = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        while (next < toPause.length) {
          const id = toPause[next++]!;
          await clients[w % processes]!.tasks.pause.mutate({ id, wait: true });
        }
      }),
    );
    const seconds = (performance.now() - pausing) / 1000;
    results.pauses = {
      paused: toPause.length,
      seconds: Math.round(seconds * 10) / 10,
      'pauses/s': Math.round(toPause.length / seconds),
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
});
farm.close();
table(
  `simulation: ${tasks} tasks, ${active} active, ${processes} processes, interval ${intervalMs} ms`,
  results.autoPause as Array<Record<string, unknown>>,
);
table('while the passes run (SDK, 16 concurrent calls)', [
  { call: 'tasks.get', ...(results.tasksGet as object) },
  { call: 'tasks.list (50)', ...(results.tasksList as object) },
]);
table('pause throughput (with wait: until paused)', [results.pauses as Record<string, unknown>]);
console.log(`seeded in ${results.seedSeconds} s`);
const out = path.join(import.meta.dirname, 'results', 'scale.json');
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
