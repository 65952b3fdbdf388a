import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { type RunningServer, startServer } from '../src/server.ts';
import { apiClient } from './api-client.ts';
import { FakeAgent } from './fake-agent.ts';
import { addressInUse, clusterFolder, onFreePort } from './private-postgres.ts';
import { testAdminToken, testServerConfig } from './test-server.ts';

const run = promisify(execFile);

/** PostgreSQL's programs, when this machine has the ones a private primary and replica need. */
async function postgresBin(): Promise<string | null> {
  const bin = await run('pg_config', ['--bindir']).then(
    (r) => r.stdout.trim(),
    () => null,
  );
  if (!bin) return null;
  return ['initdb', 'pg_ctl', 'pg_basebackup'].every((p) => existsSync(path.join(bin, p))) ? bin : null;
}

const bin = await postgresBin();
if (!bin && process.env.CI === 'true') {
  throw new Error('initdb/pg_basebackup not found (pg_config --bindir): CI=true needs them for the read replica test');
}
if (!bin)
  console.warn('skipping the read replica test: initdb, pg_ctl or pg_basebackup not found (pg_config --bindir)');

/**
 * A private primary and a streaming replica of it (pg_basebackup -R), in a temporary folder: the
 * machine's own PostgreSQL is left alone. As root the clusters belong to the postgres user (initdb
 * refuses root).
 */
async function privatePair(bin: string) {
  const { dir, as } = await clusterFolder('hiatus-replica-', bin);
  const started: string[] = [];
  const stop = (data: string) => as('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
  const cleanUp = async () => {
    for (const data of started) await stop(data);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // PostgreSQL cannot listen on port 0: a port picked just before may be taken by the time it
    // binds, and its start then fails saying so in its log; it is started again on another port.
    const start = (data: string, name: string) => {
      started.push(data);
      const log = (port: number) => path.join(dir, `${name}-${port}.log`);
      return onFreePort(
        async (port) => {
          const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
          await as('pg_ctl', ['-D', data, '-l', log(port), '-w', '-t', '120', '-o', options, 'start']);
          return port;
        },
        async (_, port) => addressInUse.test(await readFile(log(port), 'utf8').catch(() => '')),
      );
    };
    const primaryData = path.join(dir, 'primary');
    const replicaData = path.join(dir, 'replica');
    await as('initdb', ['-D', primaryData, '-U', 'postgres', '-A', 'trust', '--no-sync']);
    await appendFile(path.join(primaryData, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 trust\n');
    const primaryPort = await start(primaryData, 'primary');
    await as('pg_basebackup', [
      ...['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaData],
      ...['-R', '-X', 'stream', '--no-sync'],
    ]);
    const replicaPort = await start(replicaData, 'replica');
    const url = (port: number, database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
    return {
      primaryUrl: (database: string) => url(primaryPort, database),
      replicaUrl: (database: string) => url(replicaPort, database),
      stopReplica: () => stop(replicaData),
      cleanUp,
    };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** One query on a fresh connection, so a stopped server is noticed at once. */
async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Until `check` holds: generous, since a wait on a condition costs nothing once it holds. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await check())) throw new Error(`still waiting for ${what}`);
    },
    { timeout: 60_000, interval: 50 },
  );
}

describe.skipIf(!bin)('reads from a streaming replica (DATABASE_READ_URL)', () => {
  let pair: Awaited<ReturnType<typeof privatePair>> | undefined;
  let server: RunningServer | undefined;
  let agent: FakeAgent | undefined;
  let admin: ReturnType<typeof apiClient>;
  let alice: ReturnType<typeof apiClient>;
  const waitMs = 300;

  /** Until the replica has replayed everything the primary has committed so far. */
  const replicaCaughtUp = async () => {
    const [{ lsn }] = (await query<{ lsn: string }>(
      pair!.primaryUrl('postgres'),
      'SELECT pg_current_wal_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    await until('the replica to catch up', async () => {
      const [row] = await query<{ done: boolean }>(
        pair!.replicaUrl('postgres'),
        'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done',
        [lsn],
      );
      return row?.done === true;
    });
  };

  beforeAll(async () => {
    pair = await privatePair(bin!);
    const config = testServerConfig({
      DATABASE_URL: pair.primaryUrl('hiatus'),
      DATABASE_READ_URL: pair.replicaUrl('hiatus'),
      HIATUS_READ_REPLICA_WAIT_MS: String(waitMs),
    });
    server = await startServer(config, createLogger('silent'));
    agent = await new FakeAgent().start();
    admin = apiClient(server.url, testAdminToken);
    const user = await admin.users.create.mutate({ username: 'alice' });
    alice = apiClient(server.url, (await admin.apiKeys.create.mutate({ userId: user.id })).key);
  }, 180_000);

  afterAll(async () => {
    await agent?.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await pair?.cleanUp();
  }, 120_000);

  it("serves lists from the replica, while a caller's own write is visible to its next read", async () => {
    await replicaCaughtUp();
    await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_pause()');
    await until('replay to pause', async () => {
      const [row] = await query<{ state: string }>(
        pair!.replicaUrl('postgres'),
        'SELECT pg_get_wal_replay_pause_state() AS state',
      );
      return row?.state === 'paused';
    });

    // Alice writes while the replica replays nothing: her next list waits for it, then reads the
    // primary (the replica cannot have her task: it replays nothing).
    const { task } = await alice.tasks.create.mutate({ name: 'behind-the-replica', prompt: '', agentUrl: agent!.url });
    expect((await alice.tasks.list.query({})).items.map((t) => t.id)).toContain(task.id);

    // The admin wrote nothing since the replica caught up: its list comes from the replica, which lacks the task...
    const adminList = await admin.tasks.list.query({});
    expect(adminList.items.map((t) => t.id)).not.toContain(task.id);
    // ...while a read that is not lag-tolerant goes to the primary.
    expect((await admin.tasks.get.query({ id: task.id })).id).toBe(task.id);

    await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_resume()');
    await until('the replica to show the task to the admin', async () =>
      (await admin.tasks.list.query({})).items.some((t) => t.id === task.id),
    );
    // Caught up with her write, Alice's lists come from the replica again: a change the admin makes
    // to her task while replay is paused shows in her get (the primary), not in her list.
    await replicaCaughtUp();
    await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_pause()');
    try {
      await admin.tasks.update.mutate({ id: task.id, idleTimeoutSeconds: 4321 });
      expect((await alice.tasks.get.query({ id: task.id })).idleTimeoutSeconds).toBe(4321);
      const listed = (await alice.tasks.list.query({})).items.find((t) => t.id === task.id);
      expect(listed?.idleTimeoutSeconds).not.toBe(4321);
    } finally {
      await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_resume()');
    }
  }, 120_000);

  it("reads a paused task's log and builds from the replica, and from the primary until the replica has them", async () => {
    const talker = await new FakeAgent().start();
    try {
      talker.say(4);
      await replicaCaughtUp();
      await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_pause()');
      const { task } = await alice.tasks.create.mutate({ name: 'paused-log', prompt: '', agentUrl: talker.url });
      await until(
        'the task to be active',
        async () => (await alice.tasks.get.query({ id: task.id })).status === 'active',
      );
      await alice.tasks.pause.mutate({ id: task.id, wait: true });
      // The replica has neither the task nor its snapshot: the admin's log read goes to the primary for it...
      expect((await admin.tasks.list.query({})).items.map((t) => t.id)).not.toContain(task.id);
      const early = await admin.tasks.logs.query({ id: task.id });
      expect(early).toMatchObject({ source: 'snapshot' });
      expect(early.entries).toHaveLength(4);
      // ...while its builds come from the replica, which has none of them yet.
      expect((await admin.builds.list.query({ taskId: task.id })).items).toEqual([]);

      await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_resume()');
      await replicaCaughtUp();
      expect((await admin.builds.list.query({ taskId: task.id })).items.length).toBeGreaterThan(0);
      const late = await admin.tasks.logs.query({ id: task.id });
      expect(late.entries.map((e) => e.content)).toEqual(early.entries.map((e) => e.content));
    } finally {
      await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_resume()');
      await talker.stop();
    }
  }, 120_000);

  it('answers lag-tolerant reads from the primary when the replica is down', async () => {
    // Replaying again, whatever the test before left.
    await query(pair!.replicaUrl('postgres'), 'SELECT pg_wal_replay_resume()');
    const { task } = await alice.tasks.create.mutate({ name: 'replica-gone', prompt: '', agentUrl: agent!.url });
    await replicaCaughtUp();
    await pair!.stopReplica();
    await expect(query(pair!.replicaUrl('postgres'), 'SELECT 1')).rejects.toThrow();
    expect((await admin.tasks.list.query({})).items.map((t) => t.id)).toContain(task.id);
    expect((await alice.tasks.list.query({})).items.map((t) => t.id)).toContain(task.id);
    expect((await admin.audit.list.query({})).items.length).toBeGreaterThan(0);
    // Writes go on, and are read back at once.
    const { task: next } = await alice.tasks.create.mutate({ name: 'after-replica', prompt: '', agentUrl: agent!.url });
    expect((await alice.tasks.list.query({})).items.map((t) => t.id)).toContain(next.id);
  }, 120_000);
});

describe('DATABASE_READ_URL in the configuration', () => {
  it('is unset by default, and carries the wait when set', () => {
    expect(testServerConfig().readReplica).toBeNull();
    const config = testServerConfig({
      DATABASE_URL: 'postgres://p@127.0.0.1:5432/hiatus',
      DATABASE_READ_URL: 'postgres://p@127.0.0.1:5433/hiatus',
      HIATUS_READ_REPLICA_WAIT_MS: '50',
    });
    expect(config.readReplica).toMatchObject({ url: 'postgres://p@127.0.0.1:5433/hiatus', waitMs: 50 });
  });

  it('refuses a replica without a PostgreSQL primary, a URL of another kind and a bad wait', () => {
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://p@127.0.0.1:5433/hiatus' })).toThrow(
      /DATABASE_READ_URL is set without DATABASE_URL/,
    );
    const primary = { DATABASE_URL: 'postgres://p@127.0.0.1:5432/hiatus' };
    expect(() => loadConfig({ ...primary, DATABASE_READ_URL: 'mysql://x/y' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...primary, DATABASE_READ_URL: 'mysql://x/y' })).toThrow(/DATABASE_READ_URL: must be/);
    expect(() => loadConfig({ ...primary, HIATUS_READ_REPLICA_WAIT_MS: '-1' })).toThrow(/HIATUS_READ_REPLICA_WAIT_MS/);
  });
});
