import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient, codeOf } from '../test/api-client.ts';
import { createTestDatabase, type TestDatabase, testBackends } from '../test/databases.ts';
import { FakeAgent } from '../test/fake-agent.ts';
import { insertTaskRows } from '../test/fixtures.ts';
import { startTestServer } from '../test/test-server.ts';
import { loadConfig } from './config.ts';
import { openDatabase } from './db/connection.ts';
import { migrateToLatest } from './db/migrate.ts';
import { waitForStatus } from './inbox/send.ts';
import { createLogger } from './logger.ts';
import { type RunningServer, startServer } from './server.ts';

describe.each(testBackends())('server on %s', (backend) => {
  let database: TestDatabase;
  let server: RunningServer;
  beforeAll(async () => {
    database = await createTestDatabase(backend);
    const config = { ...loadConfig({ PORT: '0' }), database: database.config };
    server = await startServer(config, createLogger('silent'));
  });
  afterAll(async () => {
    await server.stop();
    await database.drop();
  });

  it('answers /healthz and, with migrations applied on start, /readyz', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('mounts tRPC under /trpc', async () => {
    const info = await fetch(`${server.url}/trpc/info`);
    expect(await info.json()).toEqual({ result: { data: { json: { service: 'hiatus', apiVersion: 1 } } } });
  });

  it('serves Prometheus metrics on /metrics', async () => {
    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await metrics.text();
    expect(text).toMatch(/^hiatus_tasks\{status="active"\} 0$/m);
    expect(text).toMatch(/^# TYPE hiatus_builds_total counter$/m);
    expect(text).toMatch(/^hiatus_process_resident_memory_bytes \d+/m);
  });

  it('answers an unknown API path with a JSON 404 (any other path belongs to the web console)', async () => {
    const missing = await fetch(`${server.url}/api/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not found' });
  });
});

describe('readiness', () => {
  it('is not ready while migrations are pending', async () => {
    const database = await createTestDatabase('pglite');
    const config = { ...loadConfig({ PORT: '0', HIATUS_MIGRATE_ON_START: 'false' }), database: database.config };
    const server = await startServer(config, createLogger('silent'));
    try {
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({
        reason: expect.stringMatching(/^migrations pending: 0001_core_schema/),
      });
    } finally {
      await server.stop();
      await database.drop();
    }
  });

  it('stops taking requests once stopped', async () => {
    const database = await createTestDatabase('pglite');
    const server = await startServer(
      { ...loadConfig({ PORT: '0' }), database: database.config },
      createLogger('silent'),
    );
    await server.stop();
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    await database.drop();
  });
});

describe('graceful shutdown', () => {
  it('finishes a request in flight, then stops taking new ones', async () => {
    // A long agent timeout: the test, not the clock, decides when the pause in flight ends.
    const running = await startTestServer('pglite', { HIATUS_AGENT_TIMEOUT_MS: '60000' });
    const agent = await new FakeAgent().start();
    try {
      const api = apiClient(running.server.url, running.adminToken);
      const { task } = await api.tasks.create.mutate({ name: 'slow', prompt: '', agentUrl: agent.url });
      await waitForStatus(running.server.app, task.id, 'active', 30_000);
      agent.mode = 'hang';
      const readsBefore = agent.historyReads;
      let answered = false;
      const inFlight = codeOf(api.tasks.pause.mutate({ id: task.id })).finally(() => {
        answered = true;
      });
      // The pause is in flight once the agent has been asked for its history.
      await vi.waitFor(() => expect(agent.historyReads).toBeGreaterThan(readsBefore), { timeout: 30_000 });
      const stopped = running.server.stop();
      expect(answered).toBe(false);
      // The agent goes away: the pause fails, after the server stopped listening.
      await agent.stop();
      // The pause in flight still gets its (typed) answer, not a reset connection.
      expect(await inFlight).toBe('PRECONDITION_FAILED');
      await stopped;
      await expect(fetch(`${running.server.url}/healthz`)).rejects.toThrow();
    } finally {
      await agent.stop();
      await running.database.drop();
    }
  });
});

describe('background upkeep', () => {
  it('purges tasks soft-deleted longer ago than HIATUS_PURGE_DELETED_AFTER_DAYS, and keeps the rest', async () => {
    // A PGlite folder on disk: the server opens it after the test has seeded it.
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-purge-'));
    const seeding = openDatabase({ kind: 'pglite', dataDir });
    const database = { db: seeding.db, config: { kind: 'pglite' as const, dataDir } };
    await migrateToLatest(database.db);
    const old = await insertTaskRows(database.db, 'old');
    const recent = await insertTaskRows(database.db, 'recent');
    await database.db
      .updateTable('tasks')
      .set({ created_at: sql`NOW() - interval '40 days'`, deleted_at: sql`NOW() - interval '31 days'` })
      .where('id', '=', old.taskId)
      .execute();
    await database.db.updateTable('tasks').set({ deleted_at: sql`NOW()` }).where('id', '=', recent.taskId).execute();
    await seeding.close();
    const config = { ...loadConfig({ PORT: '0', HIATUS_PURGE_DELETED_AFTER_DAYS: '30' }), database: database.config };
    const server = await startServer(config, createLogger('silent'));
    try {
      // The purge runs at start; one statement removes the old task and decides the recent one's fate.
      await vi.waitFor(
        async () =>
          expect((await server.app.db.selectFrom('tasks').select('id').execute()).map((t) => t.id)).toEqual([
            recent.taskId,
          ]),
        { timeout: 30_000 },
      );
    } finally {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
