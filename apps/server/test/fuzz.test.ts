import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/server.ts';
import { appRouter } from '../src/trpc/router.ts';
import { apiClient } from './api-client.ts';
import { testBackends } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from './test-server.ts';

const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string } }>)
  .filter(([, p]) => p._def.type !== 'subscription')
  .map(([path, p]) => ({ path, type: p._def.type as 'query' | 'mutation' }));

/** Strings that have broken services before: SQL, markup, encodings, sizes. */
const hostile = fc.oneof(
  fc.constantFrom(
    "'; DROP TABLE tasks; --",
    "' OR 1=1 --",
    '$1',
    '%s%s%s%n',
    '<script>alert(1)</script>',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udfff',
    '\u202e\u2066',
    '🙂'.repeat(50),
    'ﷺ'.repeat(100),
    '../../etc/passwd',
    'http://127.0.0.1:1/',
    'javascript:alert(1)',
    '00000000-0000-0000-0000-000000000000',
    'NaN',
    '-1',
    '9'.repeat(40),
    ' ',
    '',
  ),
  fc.string({ maxLength: 50, unit: 'grapheme' }),
  fc.string({ maxLength: 20, unit: 'binary' }),
  fc.constant('x'.repeat(200_000)),
);

/** Inputs of every shape: wrong types, deep objects, hostile strings where strings go. */
const anyInput = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.dictionary(
    fc.constantFrom(
      'id',
      'taskId',
      'name',
      'prompt',
      'agentUrl',
      'input',
      'cursor',
      'limit',
      'status',
      'messages',
      'scope',
      'username',
      'buildId',
      'userId',
      'since',
      'until',
      'bucket',
    ),
    fc.oneof(hostile, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(hostile, { maxLength: 3 })),
  ),
);

describe.each(testBackends().slice(0, 1))('hostile input on %s', (backend) => {
  let running: TestServer;
  let server: RunningServer;
  let agent: FakeAgent;
  const keys: Record<string, string> = {};
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    running = await startTestServer(backend, { HIATUS_AGENT_TIMEOUT_MS: '300' });
    server = running.server;
    agent = await new FakeAgent().start();
    agent.say(5);
    const admin = apiClient(server.url, testAdminToken);
    for (const name of ['alice', 'bob']) {
      const user = await admin.users.create.mutate({ username: name });
      keys[name] = (await admin.apiKeys.create.mutate({ userId: user.id })).key;
      const { task } = await apiClient(server.url, keys[name]).tasks.create.mutate({
        name: `${name}-task`,
        prompt: '',
        agentUrl: agent.url,
      });
      ids[name] = task.id;
    }
    const expiring = await apiClient(server.url, keys.alice).apiKeys.create.mutate({
      expiresAt: new Date(Date.now() + 60_000),
    });
    await server.app.db
      .updateTable('api_keys')
      .set({ created_at: sql`NOW() - interval '1 hour'`, expires_at: sql`NOW() - interval '1 minute'` })
      .where('id', '=', expiring.apiKey.id)
      .execute();
    keys.expired = expiring.key;
    keys.admin = testAdminToken;
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  /** What a refused call must leave as it was. */
  const state = async () => {
    const db = server.app.db;
    const [tasks, builds, snapshots, users, apiKeys] = await Promise.all([
      db.selectFrom('tasks').select(['id', 'name', 'deleted_at']).orderBy('id').execute(),
      // Job statuses move on in the background (the built-in provisioner): the builds themselves must not.
      db.selectFrom('workspace_builds').select(['id', 'reason']).orderBy('id').execute(),
      db.selectFrom('task_snapshots').select(['task_id', 'log_snapshot_created_at']).orderBy('task_id').execute(),
      db.selectFrom('users').select(['id', 'role']).orderBy('id').execute(),
      db.selectFrom('api_keys').select(['id', 'revoked_at', 'expires_at']).orderBy('id').execute(),
    ]);
    return JSON.stringify({ tasks, builds, snapshots, users, apiKeys });
  };

  /** One raw HTTP call, as any client could send it: the body or query is whatever the fuzzer made. */
  const call = async (path: string, type: 'query' | 'mutation', input: unknown, token: string | undefined) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const payload = JSON.stringify({ json: input }) ?? '{}';
    const response =
      type === 'query'
        ? await fetch(`${server.url}/trpc/${path}?input=${encodeURIComponent(payload)}`, { headers })
        : await fetch(`${server.url}/trpc/${path}`, {
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/json' },
            body: payload,
          });
    const text = await response.text();
    let body: { error?: { json?: { data?: { code?: string } } } } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // the assertion below names it
    }
    return { status: response.status, code: body.error?.json?.data?.code ?? null, text };
  };

  it.each(procedures)(
    '$path answers a typed error or a result, never a 500, and a refusal changes nothing',
    async ({ path, type }) => {
      await fc.assert(
        fc.asyncProperty(
          anyInput,
          fc.constantFrom('alice', 'bob', 'expired', 'admin', 'none', 'forged'),
          async (input, who) => {
            const token = who === 'none' ? undefined : who === 'forged' ? `${testAdminToken}-forged` : keys[who];
            const before = await state();
            const answer = await call(path, type, input, token);
            expect(answer.status, `${path} ${who} ${answer.text.slice(0, 300)}`).toBeLessThan(500);
            if (answer.status >= 400) {
              // A query string over Node's header limit is refused before tRPC sees it (431): also fine.
              if (answer.status !== 431)
                expect(answer.code, `${answer.status} ${answer.text.slice(0, 300)}`).toMatch(/^[A-Z_]+$/);
              expect(await state()).toBe(before);
            }
          },
        ),
        { numRuns: 25, seed: 20261124 },
      );
    },
  );

  it('takes well-shaped inputs with hostile strings in every field without a 500', async () => {
    const shaped = fc.oneof(
      fc.record({
        path: fc.constant('tasks.create'),
        input: fc.record({ name: hostile, prompt: hostile, agentUrl: fc.oneof(hostile, fc.constant(agent.url)) }),
      }),
      fc.record({ path: fc.constant('tasks.send'), input: fc.record({ id: fc.constant(ids.alice), input: hostile }) }),
      fc.record({
        path: fc.constant('snapshots.push'),
        input: fc.record({
          taskId: fc.constant(ids.alice),
          messages: fc.array(
            fc.record({
              id: fc.constant(0),
              role: fc.constant('agent'),
              content: hostile,
              time: fc.constant('2026-06-03T13:08:25.123Z'),
            }),
            { maxLength: 1 },
          ),
        }),
      }),
      fc.record({ path: fc.constant('users.create'), input: fc.record({ username: hostile }) }),
      fc.record({ path: fc.constant('apiKeys.create'), input: fc.record({ name: hostile }) }),
    );
    await fc.assert(
      fc.asyncProperty(shaped, async ({ path, input }) => {
        const before = await state();
        const answer = await call(path, 'mutation', input, path === 'users.create' ? keys.admin : keys.alice);
        expect(answer.status, `${path} ${answer.text.slice(0, 300)}`).toBeLessThan(500);
        if (answer.status >= 400) expect(await state()).toBe(before);
      }),
      { numRuns: 150, seed: 20261124 },
    );
  });

  it('hides other members’ tasks behind NOT_FOUND, whatever the procedure', async () => {
    for (const { path, type } of procedures.filter(
      (p) => p.path.startsWith('tasks.') || p.path.startsWith('snapshots.') || p.path.startsWith('builds.'),
    )) {
      const input = path.startsWith('tasks.')
        ? {
            id: ids.bob,
            input: 'hi',
            name: 'x',
            prompt: '',
            agentUrl: agent.url,
            messageId: '00000000-0000-4000-8000-000000000000',
          }
        : { taskId: ids.bob, messages: [] };
      if (path === 'tasks.create' || path === 'tasks.list') continue;
      const before = await state();
      const answer = await call(path, type, input, keys.alice);
      expect(answer.code, path).toBe('NOT_FOUND');
      expect(await state()).toBe(before);
    }
  });
});
