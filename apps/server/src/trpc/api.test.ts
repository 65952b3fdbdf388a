import http from 'node:http';
import { TRPCClientError } from '@trpc/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient, codeOf } from '../../test/api-client.ts';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../test/test-server.ts';
import type { RunningServer } from '../server.ts';
import type { AppRouter } from './router.ts';

describe.each(testBackends())('the API over HTTP on %s', (backend) => {
  let running: TestServer;
  let server: RunningServer;
  let agent: FakeAgent;
  let admin: ReturnType<typeof apiClient>;
  let alice: { client: ReturnType<typeof apiClient>; id: string; key: string; keyId: string };

  beforeAll(async () => {
    running = await startTestServer(backend, { HIATUS_MAX_BODY_BYTES: String(256 * 1024) });
    server = running.server;
    agent = await new FakeAgent().start();
    agent.say(4);
    admin = apiClient(server.url, testAdminToken);
    const user = await admin.users.create.mutate({ username: 'alice' });
    const { key, apiKey } = await admin.apiKeys.create.mutate({ userId: user.id });
    alice = { client: apiClient(server.url, key), id: user.id, key, keyId: apiKey.id };
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  it('refuses a missing, malformed, forged, revoked or expired key', async () => {
    expect(await codeOf(apiClient(server.url).tasks.list.query({}))).toBe('UNAUTHORIZED');
    expect(await codeOf(apiClient(server.url, undefined, { authorization: 'Basic abc' }).tasks.list.query({}))).toBe(
      'UNAUTHORIZED',
    );
    expect(await codeOf(apiClient(server.url, `${testAdminToken}x`).tasks.list.query({}))).toBe('UNAUTHORIZED');
    const { key, apiKey } = await alice.client.apiKeys.create.mutate({ name: 'short-lived' });
    expect(await codeOf(apiClient(server.url, key).tasks.list.query({}))).toBe('OK');
    await alice.client.apiKeys.revoke.mutate({ id: apiKey.id });
    expect(await codeOf(apiClient(server.url, key).tasks.list.query({}))).toBe('UNAUTHORIZED');
    expect(await codeOf(alice.client.apiKeys.revoke.mutate({ id: apiKey.id }))).toBe('CONFLICT');
    const expiring = await alice.client.apiKeys.create.mutate({ expiresAt: new Date(Date.now() + 60_000) });
    await server.app.db
      .updateTable('api_keys')
      .set({ created_at: sql`NOW() - interval '2 minutes'`, expires_at: sql`NOW() - interval '1 second'` })
      .where('id', '=', expiring.apiKey.id)
      .execute();
    expect(await codeOf(apiClient(server.url, expiring.key).tasks.list.query({}))).toBe('UNAUTHORIZED');
  });

  it('stores only a hash of each key', async () => {
    const rows = await server.app.db.selectFrom('api_keys').select(['secret_hash']).execute();
    for (const row of rows) {
      expect(row.secret_hash).toHaveLength(32);
      expect(row.secret_hash.toString('utf8')).not.toContain('hiatus_');
    }
  });

  it('answers bad input with BAD_REQUEST, the zod issues and the request id', async () => {
    try {
      await apiClient(server.url, alice.key, { 'x-request-id': 'req-42' }).tasks.create.mutate({
        name: '',
        prompt: 'p',
        agentUrl: 'javascript:alert(1)',
      });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TRPCClientError);
      const data = (error as TRPCClientError<AppRouter>).data as unknown as {
        code: string;
        httpStatus: number;
        requestId: string;
        zodIssues: Array<{ path: string[] }>;
        stack?: string;
      };
      expect(data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400, requestId: 'req-42' });
      expect(data.zodIssues.map((i) => i.path.join('.')).sort()).toEqual(['agentUrl', 'name']);
      expect(data.stack).toBeUndefined();
    }
  });

  it('returns the request id in a header, made up when the caller sends none', async () => {
    const given = await fetch(`${server.url}/trpc/info`, { headers: { 'x-request-id': 'abc-123' } });
    expect(given.headers.get('x-request-id')).toBe('abc-123');
    const made = await fetch(`${server.url}/trpc/info`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses an oversized body with PAYLOAD_TOO_LARGE and stores nothing', async () => {
    const before = await server.app.db
      .selectFrom('tasks')
      .select(sql<number>`count(*)::int`.as('n'))
      .executeTakeFirstOrThrow();
    const code = await codeOf(
      alice.client.tasks.create.mutate({ name: 'big', prompt: 'x'.repeat(300 * 1024), agentUrl: agent.url }),
    );
    expect(code).toBe('PAYLOAD_TOO_LARGE');
    const after = await server.app.db
      .selectFrom('tasks')
      .select(sql<number>`count(*)::int`.as('n'))
      .executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
  });

  it('maps an unreachable agent to PRECONDITION_FAILED and a refused transition to CONFLICT', async () => {
    const down = await new FakeAgent().start();
    await down.stop();
    const { task } = await alice.client.tasks.create.mutate({ name: 'lonely', prompt: '', agentUrl: down.url });
    await waitForStatus(alice.client, task.id, 'active');
    expect(await codeOf(alice.client.tasks.pause.mutate({ id: task.id }))).toBe('PRECONDITION_FAILED');
    const forced = await alice.client.tasks.pause.mutate({ id: task.id, withoutSnapshot: true });
    expect(forced.snapshot).toMatchObject({ taken: false });
    expect(await codeOf(alice.client.tasks.pause.mutate({ id: task.id }))).toBe('CONFLICT'); // pausing already
    expect(await codeOf(alice.client.tasks.send.mutate({ id: task.id, input: 'hello' }))).toBe('CONFLICT');
  });

  it('waits for a pause and a resume when asked, and changes a task with tasks.update', async () => {
    const { task } = await alice.client.tasks.create.mutate({ name: 'waiting', prompt: '', agentUrl: agent.url });
    await waitForStatus(alice.client, task.id, 'active');
    // A wait ends when the build settles: its limit only guards against a hang.
    const paused = await alice.client.tasks.pause.mutate({ id: task.id, wait: true, waitMs: 60_000 });
    expect(paused).toMatchObject({ settled: true, task: { status: 'paused' }, build: { jobStatus: 'succeeded' } });
    const resumed = await alice.client.tasks.resume.mutate({ id: task.id, wait: true, waitMs: 60_000 });
    expect(resumed).toMatchObject({ settled: true, task: { status: 'active' } });
    expect(await codeOf(alice.client.tasks.pause.mutate({ id: task.id, wait: true, waitMs: 120_001 }))).toBe(
      'BAD_REQUEST',
    );

    const updated = await alice.client.tasks.update.mutate({ id: task.id, idleTimeoutSeconds: 120 });
    expect(updated).toMatchObject({ id: task.id, idleTimeoutSeconds: 120, agentUrl: agent.url });
    expect((await alice.client.tasks.update.mutate({ id: task.id, idleTimeoutSeconds: null })).idleTimeoutSeconds).toBe(
      null,
    );
    expect(await codeOf(alice.client.tasks.update.mutate({ id: task.id }))).toBe('BAD_REQUEST');
    expect(await codeOf(alice.client.tasks.update.mutate({ id: task.id, agentUrl: 'ftp://x' }))).toBe('BAD_REQUEST');
    expect(await codeOf(alice.client.tasks.update.mutate({ id: task.id, agentUrl: 'http://10.1.2.3:1' }))).toBe(
      'BAD_REQUEST',
    );
    const bob = await admin.users.create.mutate({ username: 'bob-update' });
    const bobClient = apiClient(server.url, (await admin.apiKeys.create.mutate({ userId: bob.id })).key);
    expect(await codeOf(bobClient.tasks.update.mutate({ id: task.id, idleTimeoutSeconds: 60 }))).toBe('NOT_FOUND');
    await alice.client.tasks.delete.mutate({ id: task.id });
    expect(await codeOf(alice.client.tasks.update.mutate({ id: task.id, idleTimeoutSeconds: 60 }))).toBe('CONFLICT');
  });

  it('keeps read-only keys from writing and members out of admin procedures', async () => {
    const { key } = await alice.client.apiKeys.create.mutate({ scope: 'read' });
    const reader = apiClient(server.url, key);
    expect(await codeOf(reader.tasks.list.query({}))).toBe('OK');
    expect(await codeOf(reader.tasks.create.mutate({ name: 'r', prompt: '', agentUrl: agent.url }))).toBe('FORBIDDEN');
    expect(await codeOf(alice.client.users.create.mutate({ username: 'eve' }))).toBe('FORBIDDEN');
    expect(await codeOf(alice.client.apiKeys.create.mutate({ scope: 'provisioner' }))).toBe('FORBIDDEN');
    expect(await codeOf(alice.client.telemetry.lifecycle.query({ since: new Date(0), until: new Date() }))).toBe(
      'FORBIDDEN',
    );
  });

  it('lists only a member’s own tasks, newest first, page by page', async () => {
    const bob = await admin.users.create.mutate({ username: 'bob' });
    const bobClient = apiClient(server.url, (await admin.apiKeys.create.mutate({ userId: bob.id })).key);
    for (const name of ['b1', 'b2', 'b3'])
      await bobClient.tasks.create.mutate({ name, prompt: '', agentUrl: agent.url });
    const first = await bobClient.tasks.list.query({ limit: 2 });
    expect(first.items.map((t) => t.name)).toEqual(['b3', 'b2']);
    const second = await bobClient.tasks.list.query({ limit: 2, cursor: first.nextCursor! });
    expect(second).toMatchObject({ items: [{ name: 'b1' }], nextCursor: null });
    expect((await bobClient.tasks.list.query({ ownerId: alice.id })).items).toEqual([]);
    expect(await codeOf(bobClient.tasks.list.query({ cursor: 'forged' }))).toBe('BAD_REQUEST');
    const all = await admin.tasks.list.query({ limit: 200 });
    expect(all.items.some((t) => t.ownerId === alice.id) && all.items.some((t) => t.ownerId === bob.id)).toBe(true);
  });

  it('checks a workspace key’s task before reading its push, and binds the key to that task', async () => {
    const { task } = await alice.client.tasks.create.mutate({ name: 'pushy', prompt: '', agentUrl: agent.url });
    const other = await alice.client.tasks.create.mutate({ name: 'other', prompt: '', agentUrl: agent.url });
    const { key } = await alice.client.apiKeys.create.mutate({ scope: 'workspace', taskId: task.id });
    const workspace = apiClient(server.url, key);
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId: task.id, messages: agent.messages }))).toBe('OK');
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId: other.task.id, messages: [] }))).toBe('FORBIDDEN');
    expect(await codeOf(workspace.tasks.get.query({ id: task.id }))).toBe('FORBIDDEN');
    await alice.client.tasks.delete.mutate({ id: task.id });
    // The body is never sent in full: the refusal comes from the key's task alone.
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const url = new URL(`${server.url}/trpc/snapshots.push`);
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            'content-length': String(10 * 1024 * 1024),
          },
        },
        (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('{"json":{"taskId":"');
    });
    expect(response.status).toBe(404);
    expect(response.body).toContain('not found');
  });
});

async function waitForStatus(client: ReturnType<typeof apiClient>, id: string, status: string) {
  await vi.waitFor(async () => expect((await client.tasks.get.query({ id })).status).toBe(status), {
    timeout: 30_000,
  });
}
