import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHiatusClient, hiatusErrorCode } from '../../../../packages/client/src/index.ts';
import { apiClient, codeOf } from '../../test/api-client.ts';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../test/test-server.ts';
import { pushSnapshot } from '../lifecycle/snapshots.ts';

/** The limits are the process's own, whatever the database: one backend is enough. */
const backend = testBackends()[0]!;

type RawAnswer = { status: number; retryAfter: string | null; errors: Array<{ code: string; message: string }> };

/**
 * One HTTP request carrying `paths` as one batch (GET, as httpBatchLink sends queries), read
 * without a client's help: the status, `Retry-After`, and each call's error code and message.
 */
async function batch(url: string, key: string, paths: string[], inputs?: unknown[]): Promise<RawAnswer> {
  const query = new URLSearchParams({ batch: '1' });
  if (inputs) query.set('input', JSON.stringify(Object.fromEntries(inputs.map((input, i) => [i, { json: input }]))));
  const response = await fetch(`${url}/trpc/${paths.join(',')}?${query}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const body = (await response.json()) as unknown;
  const answers = (Array.isArray(body) ? body : [body]) as Array<{
    error?: { json: { message: string; data: { code: string } } };
  }>;
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    errors: answers.flatMap((a) => (a.error ? [{ code: a.error.json.data.code, message: a.error.json.message }] : [])),
  };
}

/** A new member's key on `running`. */
async function memberKey(running: TestServer, username: string): Promise<{ key: string; userId: string }> {
  const admin = apiClient(running.server.url, testAdminToken);
  const user = await admin.users.create.mutate({ username });
  const { key } = await admin.apiKeys.create.mutate({ userId: user.id });
  return { key, userId: user.id };
}

describe(`one caller's limits over HTTP on ${backend}`, () => {
  describe('batch size and rate', () => {
    let running: TestServer;
    let url: string;
    let alice: string;
    let bob: string;

    beforeAll(async () => {
      running = await startTestServer(backend, {
        HIATUS_MAX_BATCH_SIZE: '5',
        // One token every 1,000 s: no refill within the suite, however slow the machine.
        HIATUS_RATE_LIMIT_PER_SECOND: '0.001',
        HIATUS_RATE_LIMIT_BURST: '5',
      });
      url = running.server.url;
      // Each key is made by the admin, whose own bucket pays for it: two keys, four calls.
      alice = (await memberKey(running, 'alice')).key;
      bob = (await memberKey(running, 'bob')).key;
    });
    afterAll(() => running?.close());

    it('refuses a batch over the cap whole, before any of its calls runs', async () => {
      const over = await batch(url, alice, Array(6).fill('tasks.list'));
      expect(over.status).toBe(400);
      expect(over.errors).toEqual([
        {
          code: 'BAD_REQUEST',
          message: expect.stringContaining('a batch may hold at most 5 calls and this one has 6'),
        },
      ]);
      // Refused before the key's bucket was touched: a full batch still passes.
      const full = await batch(url, alice, Array(5).fill('tasks.list'));
      expect(full).toMatchObject({ status: 200, errors: [] });
    });

    it('counts every call of a batch against the key, and answers TOO_MANY_REQUESTS with Retry-After', async () => {
      // alice spent her burst of 5 above.
      const refused = await batch(url, alice, ['tasks.list']);
      expect(refused.status).toBe(429);
      expect(refused.errors).toEqual([
        { code: 'TOO_MANY_REQUESTS', message: expect.stringContaining('0.001 calls a second (bursts of 5)') },
      ]);
      // When the next token is back: within one token's time.
      expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(refused.retryAfter)).toBeLessThanOrEqual(1_000);
      // A watch stream is refused by the same bucket, as an event of its stream (which the SDK gives onError).
      const watched = await new Promise<string>((resolve) => {
        const subscription = createHiatusClient({ url, token: alice }).tasks.watch.subscribe(
          { id: '00000000-0000-4000-8000-000000000000' },
          {
            onError: (error) => {
              subscription.unsubscribe();
              resolve(hiatusErrorCode(error) ?? String(error));
            },
          },
        );
      });
      expect(watched).toBe('TOO_MANY_REQUESTS');
      // Another key has a bucket of its own: three calls, then two more would be one too many.
      expect(await batch(url, bob, Array(3).fill('tasks.list'))).toMatchObject({ status: 200, errors: [] });
      // Refused whole, with one answer (which a client gives each of its calls), before the key is looked up.
      const overBatch = await batch(url, bob, Array(3).fill('tasks.list'));
      expect(overBatch).toMatchObject({ status: 429, retryAfter: expect.stringMatching(/^\d+$/) });
      expect(overBatch.errors.map((e) => e.code)).toEqual(['TOO_MANY_REQUESTS']);
      // The refused batch took nothing: the two tokens left still pay for two calls.
      expect(await batch(url, bob, Array(2).fill('tasks.list'))).toMatchObject({ status: 200, errors: [] });
      const client = apiClient(url, bob);
      const [one, two] = await Promise.all([codeOf(client.tasks.list.query({})), codeOf(client.me.query())]);
      expect([one, two]).toEqual(['TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS']);
    });
  });

  describe('watch streams and heavy reads', () => {
    let running: TestServer;
    let url: string;
    let agent: FakeAgent;
    let alice: { key: string; userId: string };
    let taskId: string;

    beforeAll(async () => {
      running = await startTestServer(backend, {
        HIATUS_MAX_OPEN_WATCHES_PER_KEY: '2',
        HIATUS_HEAVY_READ_CONCURRENCY: '1',
        HIATUS_HEAVY_READ_QUEUE: '0',
      });
      url = running.server.url;
      agent = (await new FakeAgent().start()).say(4);
      alice = await memberKey(running, 'alice');
      const { task } = await apiClient(url, alice.key).tasks.create.mutate({
        name: 'watched',
        prompt: 'p',
        agentUrl: agent.url,
      });
      taskId = task.id;
      await pushSnapshot(running.server.app, taskId, { messages: agent.messages });
    });
    afterAll(async () => {
      await agent?.stop();
      await running?.close();
    });

    /** Opens a watch with `key`: resolves with 'OK' at its first update, or with its error's code. */
    function openWatch(key: string): { opened: Promise<string>; close(): void } {
      const client = createHiatusClient({ url, token: key });
      let settle: (code: string) => void = () => undefined;
      const opened = new Promise<string>((resolve) => {
        settle = resolve;
      });
      const subscription = client.tasks.watch.subscribe(
        { id: taskId },
        {
          onData: () => settle('OK'),
          onError: (error) => settle(hiatusErrorCode(error) ?? String(error)),
        },
      );
      return { opened, close: () => subscription.unsubscribe() };
    }

    it('caps the watch streams one key holds open, and frees a slot when one closes', async () => {
      const first = openWatch(alice.key);
      const second = openWatch(alice.key);
      expect(await Promise.all([first.opened, second.opened])).toEqual(['OK', 'OK']);
      const third = openWatch(alice.key);
      expect(await third.opened).toBe('TOO_MANY_REQUESTS');
      third.close();
      // Another key is not held to alice's streams.
      const bob = await memberKey(running, 'bob');
      const bobs = openWatch(bob.key);
      expect(await bobs.opened).toBe('NOT_FOUND'); // not bob's task, but his stream was let in
      bobs.close();

      first.close();
      // The server frees the slot when it sees the connection go, which the client cannot observe:
      // open watches until one is let in.
      await vi.waitFor(
        async () => {
          const attempt = openWatch(alice.key);
          const code = await attempt.opened;
          attempt.close();
          expect(code).toBe('OK');
        },
        { timeout: 30_000, interval: 100 },
      );
      second.close();
    });

    it('reads one whole snapshot per request, and says so to the second in a batch', async () => {
      const answer = await batch(url, alice.key, ['snapshots.get', 'snapshots.get'], [{ taskId }, { taskId }]);
      expect(answer.errors).toEqual([
        { code: 'BAD_REQUEST', message: expect.stringContaining('one such call per request') },
      ]);
      // The place is given back once the response is written.
      await vi.waitFor(() => expect(running.server.app.heavyReads.load.active).toBe(0), { timeout: 30_000 });
    });

    it('answers SERVICE_UNAVAILABLE with Retry-After when the heavy reads are at their bound', async () => {
      const elsewhere = await running.server.app.heavyReads.acquire('someone else');
      try {
        const busy = await batch(url, alice.key, ['snapshots.get'], [{ taskId }]);
        expect(busy.status).toBe(503);
        expect(busy.retryAfter).toBe('1');
        expect(busy.errors).toEqual([
          { code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('whole-history reads') },
        ]);
      } finally {
        elsewhere();
      }
      // Alice holding her share already (her own live log fetch, say): TOO_MANY_REQUESTS for her.
      const hers = await running.server.app.heavyReads.acquire(alice.userId);
      try {
        const mine = await batch(url, alice.key, ['snapshots.get'], [{ taskId }]);
        expect(mine).toMatchObject({ status: 429, retryAfter: '1' });
      } finally {
        hers();
      }
      const snapshot = await createHiatusClient({ url, token: alice.key }).snapshots.get.query({ taskId });
      expect(snapshot.messageCount).toBe(4);
    });
  });
});
