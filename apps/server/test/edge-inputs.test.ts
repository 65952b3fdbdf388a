import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from './api-client.ts';
import { testBackends } from './databases.ts';
import { startTestServer, type TestServer, testAdminToken } from './test-server.ts';

/** The code and message of a refused call, through the typed client. */
async function refusal(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as { message: string; data?: { code?: string } };
    return { code: e.data?.code ?? 'NO_CODE', message: e.message };
  }
  throw new Error('the call succeeded');
}

// Words that only a runtime or a library says: a 400 must be Hiatus's own sentence instead.
const runtimeWords = /Maximum call stack|Unknown transformation|Unexpected token|JSON at position|bigint|"code":/;

// One past PostgreSQL's bigint, one past its integer.
const pastBigint = '9223372036854775808';
const pastInteger = 2 ** 31;

describe.each(testBackends())('inputs at the edge on %s', (backend) => {
  let running: TestServer;
  let admin: ReturnType<typeof apiClient>;
  let url: string;

  beforeAll(async () => {
    running = await startTestServer(backend);
    url = running.server.url;
    admin = apiClient(url, testAdminToken);
  });
  afterAll(() => running.close());

  it('refuses an id or cursor beyond its column with 400, never 500', async () => {
    const hook = await admin.webhooks.create.mutate({ url: 'http://127.0.0.1:9/hook' });
    const { task } = await admin.tasks.create.mutate({
      name: 'edges',
      prompt: '',
      agentUrl: 'http://127.0.0.1:9',
      sendPrompt: false,
    });
    const calls = {
      'events.list after': () => admin.events.list.query({ after: pastBigint }),
      'webhooks.deliveries cursor': () => admin.webhooks.deliveries.query({ id: hook.id, cursor: pastBigint }),
      'webhooks.redeliver deliveryId': () => admin.webhooks.redeliver.mutate({ id: hook.id, deliveryId: pastBigint }),
      'audit.list cursor': () => admin.audit.list.query({ cursor: pastBigint }),
      'builds.list cursor': () => admin.builds.list.query({ taskId: task.id, cursor: pastInteger }),
      'templates.get version': () => admin.templates.get.query({ name: 'demo', version: pastInteger }),
      'tasks.create templateVersion': () =>
        admin.tasks.create.mutate({ name: 'v', prompt: '', template: 'demo', templateVersion: pastInteger }),
    };
    for (const [what, call] of Object.entries(calls)) {
      const { code, message } = await refusal(call());
      expect({ what, code }).toEqual({ what, code: 'BAD_REQUEST' });
      expect(message).not.toMatch(runtimeWords);
    }
    // The largest values the columns hold are still inputs, answered as such.
    expect(await admin.events.list.query({ after: '9223372036854775807' })).toMatchObject({ items: [] });
    expect(await admin.builds.list.query({ taskId: task.id, cursor: pastInteger - 1 })).toBeTruthy();
  });

  it('answers a bad input in one sentence, with its problems kept as data', async () => {
    const error = await admin.webhooks.create
      .mutate({ url: 7 as unknown as string, description: 'x'.repeat(501) })
      .catch((e) => e);
    expect(error.data.code).toBe('BAD_REQUEST');
    expect(error.message).toMatch(/^url: .+; description: .+$/);
    expect(error.message).not.toMatch(runtimeWords);
    expect(error.data.zodIssues.map((i: { path: string[] }) => i.path.join('.'))).toEqual(['url', 'description']);
  });

  it('refuses malformed, deeply nested and forged superjson with its own sentences', async () => {
    const post = async (body: string) => {
      const res = await fetch(`${url}/trpc/tasks.create`, {
        method: 'POST',
        headers: { authorization: `Bearer ${testAdminToken}`, 'content-type': 'application/json' },
        body,
      });
      // The error as superjson serialised it.
      const { error } = (await res.json()) as { error: { json: { message: string; data: { code: string } } } };
      return { status: res.status, code: error.json.data.code, message: error.json.message };
    };
    let deep: unknown = ['undefined'];
    // Deeper than superjson's recursion reaches (about 1,400 levels), within JSON.stringify's.
    for (let i = 0; i < 2_500; i++) deep = [deep];
    const bodies = {
      'not JSON': '{"json": ',
      'deeply nested meta': JSON.stringify({ json: { name: 'x', prompt: '' }, meta: { values: { prompt: deep } } }),
      'deeply nested input': JSON.stringify({ json: { name: 'x', prompt: deep } }),
      'an unknown transformation': JSON.stringify({
        json: { name: 'x', prompt: '' },
        meta: { values: { prompt: ['map', '__proto__', 1] } },
      }),
      'a transformation of a path that is not there': JSON.stringify({
        json: { name: 'x' },
        meta: { values: { 'a.b.c': ['Date'] } },
      }),
    };
    for (const [what, body] of Object.entries(bodies)) {
      const answer = await post(body);
      expect({ what, status: answer.status, code: answer.code }).toEqual({ what, status: 400, code: 'BAD_REQUEST' });
      expect({ what, message: answer.message }).not.toMatchObject({ message: expect.stringMatching(runtimeWords) });
    }
    // Nothing of these reached the database.
    expect((await admin.tasks.list.query({})).items.map((t) => t.name)).not.toContain('x');
  });
});
