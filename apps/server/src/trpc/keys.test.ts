import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHiatusClient, hiatusErrorCode, type Task } from '../../../../packages/client/src/index.ts';
import { apiClient, codeOf } from '../../test/api-client.ts';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../test/test-server.ts';
import type { RunningServer } from '../server.ts';

/** How a watch ended: its error's code (null for a clean end), and what it saw. */
type WatchEnd = { code: string | null; seen: Task[] };

describe.each(testBackends())('keys over HTTP on %s', (backend) => {
  let running: TestServer;
  let server: RunningServer;
  let agent: FakeAgent;
  let admin: ReturnType<typeof apiClient>;
  let alice: { id: string; key: string; keyId: string; client: ReturnType<typeof apiClient> };

  beforeAll(async () => {
    // No built-in provisioner: the tests take the jobs themselves, with provisioner keys.
    running = await startTestServer(backend, { HIATUS_BUILTIN_PROVISIONER: 'false' });
    server = running.server;
    agent = await new FakeAgent().start();
    admin = apiClient(server.url, testAdminToken);
    const user = await admin.users.create.mutate({ username: 'alice' });
    const { key, apiKey } = await admin.apiKeys.create.mutate({ userId: user.id, name: 'laptop' });
    alice = { id: user.id, key, keyId: apiKey.id, client: apiClient(server.url, key) };
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  /**
   * Watches `taskId` with `key`: `firstUpdate` resolves at the stream's first task, `end` when the
   * stream ends (or after `ms`, a guard against a hang, which fails the test).
   */
  function watch(key: string, taskId: string, ms = 60_000): { firstUpdate: Promise<void>; end: Promise<WatchEnd> } {
    const client = createHiatusClient({ url: server.url, token: key });
    const seen: Task[] = [];
    let updated: () => void = () => undefined;
    const firstUpdate = new Promise<void>((resolve) => {
      updated = resolve;
    });
    const end = new Promise<WatchEnd>((resolve, reject) => {
      const timer = setTimeout(() => {
        subscription.unsubscribe();
        reject(new Error(`the watch did not end within ${ms} ms (saw ${seen.length} updates)`));
      }, ms);
      const ended = (code: string | null) => {
        clearTimeout(timer);
        subscription.unsubscribe();
        resolve({ code, seen });
      };
      const subscription = client.tasks.watch.subscribe(
        { id: taskId },
        {
          onData: (task) => {
            seen.push(task);
            updated();
          },
          onError: (error) => ended(hiatusErrorCode(error) ?? `not a Hiatus error: ${String(error)}`),
          onComplete: () => ended(null),
        },
      );
    });
    return { firstUpdate, end };
  }

  const watchUntilEnd = (key: string, taskId: string) => watch(key, taskId).end;

  /** A task of alice's, its first start completed. */
  async function activeTask(): Promise<string> {
    const { task } = await alice.client.tasks.create.mutate({
      name: `t-${Math.random()}`,
      prompt: 'p',
      agentUrl: agent.url,
    });
    const job = await admin.provisioner.acquire.mutate({});
    await admin.provisioner.complete.mutate({ buildId: job!.build.id });
    return task.id;
  }

  it('answers me for any key: its user and the key itself', async () => {
    expect(await alice.client.me.query()).toEqual({
      userId: alice.id,
      username: 'alice',
      role: 'member',
      keyId: alice.keyId,
      keyName: 'laptop',
      scope: 'full',
      taskId: null,
      expiresAt: null,
    });
    const taskId = await activeTask();
    const workspace = await alice.client.apiKeys.create.mutate({ scope: 'workspace', taskId });
    expect(await apiClient(server.url, workspace.key).me.query()).toMatchObject({
      userId: alice.id,
      keyId: workspace.apiKey.id,
      scope: 'workspace',
      taskId,
    });
    const provisioner = await admin.apiKeys.create.mutate({ scope: 'provisioner' });
    expect(await apiClient(server.url, provisioner.key).me.query()).toMatchObject({
      username: 'admin',
      role: 'admin',
      scope: 'provisioner',
    });
    expect(await codeOf(apiClient(server.url).me.query())).toBe('UNAUTHORIZED');
  });

  it('lists a user’s own keys, never a secret, and users for admins only', async () => {
    const bob = await admin.users.create.mutate({ username: 'bob' });
    const bobKey = await admin.apiKeys.create.mutate({ userId: bob.id, name: 'bob-full' });
    const bobClient = apiClient(server.url, bobKey.key);
    const reader = await bobClient.apiKeys.create.mutate({ name: 'dashboard', scope: 'read' });
    const old = await bobClient.apiKeys.create.mutate({ name: 'old', expiresAt: new Date(Date.now() + 60_000) });
    await bobClient.apiKeys.revoke.mutate({ id: old.apiKey.id });

    await apiClient(server.url, reader.key).me.query();
    // Its last use is written in the background.
    const listed = await vi.waitFor(
      async () => {
        const page = await bobClient.apiKeys.list.query();
        if (!page.items.find((k) => k.name === 'dashboard')?.lastUsedAt) throw new Error('not recorded yet');
        return page;
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(listed.nextCursor).toBeNull();
    expect(listed.items.map((k) => k.name)).toEqual(['old', 'dashboard', 'bob-full']);
    expect(listed.items[0]).toMatchObject({ id: old.apiKey.id, scope: 'full', revokedAt: expect.any(Date) });
    expect(listed.items[0]!.expiresAt).toBeInstanceOf(Date);
    expect(listed.items[1]).toMatchObject({ scope: 'read', lastUsedAt: expect.any(Date), revokedAt: null });
    for (const key of listed.items) {
      expect(Object.keys(key).sort()).toEqual(
        ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'revokedAt', 'scope', 'taskId', 'userId'].sort(),
      );
    }
    const wire = JSON.stringify(listed);
    for (const secret of [bobKey.key, reader.key, old.key]) expect(wire).not.toContain(secret.slice(7));

    // Page by page.
    const first = await bobClient.apiKeys.list.query({ limit: 2 });
    expect(first.items.map((k) => k.name)).toEqual(['old', 'dashboard']);
    const second = await bobClient.apiKeys.list.query({ limit: 2, cursor: first.nextCursor! });
    expect(second).toMatchObject({ items: [{ name: 'bob-full' }], nextCursor: null });

    // Only one's own keys; an admin may ask for anyone's.
    expect((await alice.client.apiKeys.list.query()).items.every((k) => k.userId === alice.id)).toBe(true);
    expect(await codeOf(alice.client.apiKeys.list.query({ userId: bob.id }))).toBe('FORBIDDEN');
    expect((await admin.apiKeys.list.query({ userId: bob.id })).items).toHaveLength(3);

    const users = await admin.users.list.query({ limit: 2 });
    expect(users.items.map((u) => u.username)).toEqual(['admin', 'alice']);
    const rest = await admin.users.list.query({ limit: 2, cursor: users.nextCursor! });
    expect(rest.items.map((u) => u.username)).toEqual(['bob']);
    expect(await codeOf(alice.client.users.list.query())).toBe('FORBIDDEN');
    expect(await codeOf(apiClient(server.url, reader.key).apiKeys.create.mutate({ name: 'HIATUS_ADMIN_TOKEN' }))).toBe(
      'FORBIDDEN',
    );
    expect(await codeOf(bobClient.apiKeys.create.mutate({ name: 'HIATUS_ADMIN_TOKEN' }))).toBe('BAD_REQUEST');
  });

  it('knows a provisioner by its key: another key can neither heartbeat nor complete its job', async () => {
    const p1 = apiClient(server.url, (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'p1' })).key);
    const p2 = apiClient(server.url, (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'p2' })).key);
    const { task } = await alice.client.tasks.create.mutate({ name: 'held', prompt: 'p', agentUrl: agent.url });
    const job = await p1.provisioner.acquire.mutate({ provisionerId: 'gpu-1' });
    expect(job).toMatchObject({ taskId: task.id, build: { jobStatus: 'running' } });
    const buildId = job!.build.id;
    const before = await server.app.db.selectFrom('workspace_builds').where('id', '=', buildId).selectAll().execute();
    expect(before[0]).toMatchObject({ provisioner_id: 'gpu-1', provisioner_key_id: expect.any(String) });

    // Naming p1 (its label, or its key id as a label) changes nothing: the key decides.
    const asP2 = { buildId, provisionerId: 'gpu-1' } as { buildId: string };
    for (const attempt of [
      () => p2.provisioner.heartbeat.mutate(asP2),
      () => p2.provisioner.complete.mutate(asP2),
      () => p2.provisioner.complete.mutate({ buildId, error: 'stolen' }),
      () => admin.provisioner.heartbeat.mutate({ buildId }),
    ]) {
      await expect(attempt()).rejects.toMatchObject({
        data: { code: 'CONFLICT' },
        message: expect.stringContaining('not a running job held by this provisioner'),
      });
    }
    const after = await server.app.db.selectFrom('workspace_builds').where('id', '=', buildId).selectAll().execute();
    expect(after).toEqual(before);
    expect((await alice.client.tasks.get.query({ id: task.id })).status).toBe('initializing');

    await p1.provisioner.heartbeat.mutate({ buildId });
    await p1.provisioner.complete.mutate({ buildId });
    expect((await alice.client.tasks.get.query({ id: task.id })).status).toBe('active');
    const audit = await admin.audit.list.query({ resourceId: buildId, limit: 10 });
    expect(audit.items[0]).toMatchObject({
      action: 'build.succeeded',
      diff: { provisionerId: 'gpu-1', provisionerKeyId: before[0]!.provisioner_key_id },
    });
  });

  it('ends an open watch with UNAUTHORIZED once its key is revoked or expires', async () => {
    const taskId = await activeTask();
    const revoked = await alice.client.apiKeys.create.mutate({ name: 'revoked', scope: 'read' });
    const expiring = await alice.client.apiKeys.create.mutate({
      name: 'expiring',
      scope: 'read',
      expiresAt: new Date(Date.now() + 60_000),
    });
    const watches = [watch(revoked.key, taskId), watch(expiring.key, taskId)];
    // Both streams are open and have sent the task.
    await Promise.all(watches.map((w) => w.firstUpdate));
    await alice.client.apiKeys.revoke.mutate({ id: revoked.apiKey.id });
    await server.app.db
      .updateTable('api_keys')
      .set({ created_at: sql`NOW() - interval '1 hour'`, expires_at: sql`NOW()` })
      .where('id', '=', expiring.apiKey.id)
      .execute();
    // How soon is up to the watch's key check (defaults.watchKeyCheckMs); the test asks that it ends.
    for (const ended of await Promise.all(watches.map((w) => w.end))) {
      expect(ended.code).toBe('UNAUTHORIZED');
      expect(ended.seen.map((t) => t.id)).toEqual([taskId]);
    }
  });

  it('ends a watch with its typed code, not a 500 the client would retry forever', async () => {
    const missing = await watchUntilEnd(alice.key, '00000000-0000-4000-8000-000000000000');
    expect(missing).toMatchObject({ code: 'NOT_FOUND', seen: [] });
    const bob = await admin.users.create.mutate({ username: `bob-${Math.random().toString(36).slice(2, 8)}` });
    const bobKey = (await admin.apiKeys.create.mutate({ userId: bob.id, scope: 'read' })).key;
    const othersTask = await activeTask();
    expect(await watchUntilEnd(bobKey, othersTask)).toMatchObject({ code: 'NOT_FOUND', seen: [] });
  });

  it('lets a read key read without writing a row: no audit record, no key update', async () => {
    const taskId = await activeTask();
    const othersTask = await activeTask();
    const bob = await admin.users.create.mutate({ username: `reader-${Math.random().toString(36).slice(2, 8)}` });
    const readerKey = await admin.apiKeys.create.mutate({ userId: bob.id, scope: 'read' });
    const reader = apiClient(server.url, readerKey.key);
    // A key whose first use, once written, shows that a background write ran after the reads below.
    const marker = await admin.apiKeys.create.mutate({ userId: bob.id, scope: 'read', name: 'marker' });
    const reads = () =>
      Promise.all([
        reader.tasks.list.query({}),
        reader.templates.list.query(),
        reader.info.query(),
        codeOf(reader.tasks.get.query({ id: othersTask })),
        codeOf(reader.tasks.logs.query({ id: othersTask })),
      ]);
    await reads(); // the first use is recorded, and so is the first refused look at another's task
    // The last use is written in the background.
    const lastUsed = async (id: string) =>
      (await server.app.db.selectFrom('api_keys').where('id', '=', id).select('last_used_at').executeTakeFirstOrThrow())
        .last_used_at;
    await vi.waitFor(async () => expect(await lastUsed(readerKey.apiKey.id)).not.toBeNull(), {
      timeout: 30_000,
      interval: 100,
    });
    const written = async () => ({
      audit: Number(
        (
          await server.app.db
            .selectFrom('audit_logs')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      ),
      keys: (
        await sql<{ id: string; xmin: string }>`
          SELECT id, xmin::text FROM api_keys WHERE id <> ${marker.apiKey.id} ORDER BY id`.execute(server.app.db)
      ).rows,
    });
    const before = await written();
    for (let i = 0; i < 10; i++) {
      const [, , , refused] = await reads();
      expect(refused).toBe('NOT_FOUND');
    }
    // One write takes every use noted so far: once the marker's use, noted after the reads, is
    // written, nothing of the reads is waiting to be written.
    await apiClient(server.url, marker.key).me.query();
    await vi.waitFor(async () => expect(await lastUsed(marker.apiKey.id)).not.toBeNull(), {
      timeout: 30_000,
      interval: 100,
    });
    expect(await written()).toEqual(before);
    expect(taskId).toBeTruthy();
  });
});

describe.each(testBackends())('/metrics with HIATUS_METRICS_TOKEN on %s', (backend) => {
  const metricsToken = 'metrics-Tq9v2LxH7mZ4pW8cR1nB6kD3sF5gJ0aE';
  let running: TestServer;

  beforeAll(async () => {
    running = await startTestServer(backend, { HIATUS_METRICS_TOKEN: metricsToken });
  });
  afterAll(() => running.close());

  const scrape = (authorization?: string) =>
    fetch(`${running.server.url}/metrics`, { headers: authorization ? { authorization } : {} });

  it('answers 401 without the token or with another, and the metrics with it', async () => {
    for (const wrong of [
      undefined,
      'Bearer nope',
      `Bearer ${metricsToken}x`,
      `Bearer ${testAdminToken}`,
      metricsToken,
    ]) {
      const response = await scrape(wrong);
      expect(response.status, String(wrong)).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
      expect(await response.text()).not.toContain('hiatus_');
    }
    const response = await scrape(`Bearer ${metricsToken}`);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('hiatus_tasks');
    // The probes stay open.
    expect((await fetch(`${running.server.url}/healthz`)).status).toBe(200);
  });
});

describe.each(testBackends())('/metrics without HIATUS_METRICS_TOKEN on %s', (backend) => {
  it('answers anyone on a loopback-only server, and no one on a server that listens beyond loopback', async () => {
    const loopback = await startTestServer(backend, { HOST: '127.0.0.1' });
    try {
      const response = await fetch(`${loopback.server.url}/metrics`);
      expect(response.status).toBe(200);
      expect(await response.text()).toContain('hiatus_tasks');
    } finally {
      await loopback.close();
    }
    const everywhere = await startTestServer(backend, { HOST: '0.0.0.0' });
    try {
      // Asked over loopback all the same: what counts is where the server listens.
      const response = await fetch(`http://127.0.0.1:${new URL(everywhere.server.url).port}/metrics`);
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
      const body = await response.text();
      expect(body).toContain('HIATUS_METRICS_TOKEN');
      expect(body).not.toContain('hiatus_');
      expect((await fetch(`http://127.0.0.1:${new URL(everywhere.server.url).port}/healthz`)).status).toBe(200);
    } finally {
      await everywhere.close();
    }
  });
});
