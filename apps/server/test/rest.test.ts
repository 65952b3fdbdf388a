import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { repoRoot } from '../src/config.ts';
import { apiClient } from './api-client.ts';
import { testBackends } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from './test-server.ts';

/** curl runs the README's examples: without it they are skipped, with a message, except under CI=true. */
const hasCurl = spawnSync('curl', ['--version']).status === 0;
if (!hasCurl && process.env.CI !== 'true') {
  process.stdout.write('\n*** curl is not installed: the README curl examples did not run.\n\n');
}

/** One curl command of the README, with the label of the comment above it (`# pause: …` → `pause`). */
type Example = { label: string; command: string };

/** The curl commands of the README's "Raw HTTP" section, in order, continuation lines joined. */
function readmeExamples(): Example[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split(/^## Raw HTTP$/m)[1]?.split(/^## /m)[0] ?? '';
  const examples: Example[] = [];
  for (const [, block] of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let label = '';
    for (const line of block!.replace(/\\\n\s*/g, '').split('\n')) {
      const comment = /^# ([^:]+):/.exec(line);
      if (comment) label = comment[1]!;
      else if (line.startsWith('curl ')) examples.push({ label, command: line });
    }
  }
  return examples;
}

// biome-ignore lint/suspicious/noExplicitAny: a JSON answer, checked field by field by the expectations
type Answer = { status: number; contentType: string; body: any };

const isoDate = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const problemType = 'application/problem+json';

describe.each(testBackends())('REST paths and /openapi.json on %s', (backend) => {
  let running: TestServer;
  let url: string;
  let agent: FakeAgent;
  const auth = { authorization: `Bearer ${testAdminToken}` };

  beforeAll(async () => {
    running = await startTestServer(backend, { HIATUS_MAX_BODY_BYTES: '65536' });
    url = running.server.url;
    agent = await new FakeAgent().start();
    agent.say(4);
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  /** Runs a README command with real curl through bash, against this server, as a user would paste it. */
  async function runExample(command: string, task: string): Promise<Answer> {
    const { stdout } = await promisify(execFile)(
      'bash',
      ['-c', `${command.replaceAll('http://127.0.0.1:8080', url)} -w '\\n%{http_code} %{content_type}'`],
      { env: { ...process.env, HIATUS_TOKEN: testAdminToken, TASK: task }, timeout: 60_000 },
    );
    const cut = stdout.lastIndexOf('\n');
    const [status, contentType] = stdout.slice(cut + 1).split(' ');
    return { status: Number(status), contentType: contentType ?? '', body: JSON.parse(stdout.slice(0, cut)) };
  }

  async function call(method: string, route: string, body?: unknown, headers: Record<string, string> = auth) {
    const response = await fetch(`${url}${route}`, {
      method,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    return {
      status: response.status,
      contentType: response.headers.get('content-type') ?? '',
      headers: response.headers,
      body: text ? JSON.parse(text) : undefined,
    };
  }

  /** Waits until the task has `status`. */
  async function until(id: string, status: string): Promise<void> {
    await vi.waitFor(async () => expect((await call('GET', `/api/v1/tasks/${id}`)).body.status).toBe(status), {
      timeout: 60_000,
      interval: 50,
    });
  }

  it.skipIf(!hasCurl && process.env.CI !== 'true')(
    "runs the README's curl examples as written",
    async () => {
      const examples = readmeExamples();
      const labels = examples.map((e) => e.label);
      expect(labels).toEqual(
        expect.arrayContaining([
          'create',
          'get',
          'pause',
          'logs',
          'pause again',
          'resume',
          'delete',
          'a query',
          'a mutation',
          'a batch',
        ]),
      );
      // The task every other example names: the README's own create, run first.
      const created = await runExample(examples.find((e) => e.label === 'create')!.command, '');
      expect(created.status).toBe(200);
      expect(created.contentType).toBe('application/json');
      expect(created.body.task).toMatchObject({ name: 'hello', prompt: 'Say hello', templateId: expect.any(String) });
      expect(['pending', 'initializing']).toContain(created.body.task.status);
      expect(created.body.build).toMatchObject({ transition: 'start', reason: 'initiator' });
      const task: string = created.body.task.id;
      await until(task, 'active');

      for (const { label, command } of examples.filter((e) => e.label !== 'create')) {
        const answer = await runExample(command, task);
        const { status, body } = answer;
        switch (label) {
          case 'a query':
            expect(status).toBe(200);
            expect(body.result.data.json).toMatchObject({ id: task, status: 'active' });
            expect(body.result.data.json.createdAt).toMatch(isoDate);
            expect(body.result.data.meta.values.createdAt).toEqual(['Date']);
            break;
          case 'a mutation':
            expect(status).toBe(200);
            expect(body.result.data.json.task.id).toBe(task);
            break;
          case 'a batch':
            expect(status).toBe(200);
            expect(body).toHaveLength(2);
            expect(body[0].result.data.json.id).toBe(task);
            expect(body[1].result.data.json.entries.length).toBeGreaterThan(0);
            break;
          case 'get':
            expect(status).toBe(200);
            expect(body).toMatchObject({ id: task, status: 'active', name: 'hello' });
            expect(body.createdAt).toMatch(isoDate);
            expect(body.latestBuild.createdAt).toMatch(isoDate);
            break;
          case 'pause':
            expect(status).toBe(200);
            expect(body).toMatchObject({
              task: { id: task, status: 'paused' },
              settled: true,
              snapshot: { taken: true },
            });
            break;
          case 'logs':
            expect(status).toBe(200);
            expect(body.source).toBe('snapshot');
            expect(body.snapshotAt).toMatch(isoDate);
            expect(body.entries.length).toBeGreaterThan(0);
            expect(body.entries.length).toBeLessThanOrEqual(20);
            expect(body.entries[0]).toMatchObject({
              role: 'input',
              content: 'Say hello',
              time: expect.stringMatching(isoDate),
            });
            break;
          case 'pause again':
            expect(status).toBe(409);
            expect(answer.contentType).toBe(problemType);
            expect(body).toEqual({
              type: 'about:blank',
              title: 'Conflict',
              status: 409,
              detail: `cannot pause task ${task}: it is paused (pause is allowed when active)`,
              instance: `/api/v1/tasks/${task}/pause`,
              code: 'CONFLICT',
              requestId: expect.any(String),
            });
            break;
          case 'resume':
            expect(status).toBe(200);
            expect(body).toMatchObject({ task: { id: task, status: 'active' }, settled: true });
            break;
          case 'delete':
            expect(status).toBe(200);
            expect(body.task).toMatchObject({ id: task, status: 'deleted', deletedAt: expect.stringMatching(isoDate) });
            break;
          default:
            throw new Error(`no expectations for the README example "${label}": ${command}`);
        }
      }
    },
    120_000,
  );

  it('serves /openapi.json without a key: a valid OpenAPI 3.1 document of these paths', async () => {
    const { status, contentType, body } = await call('GET', '/openapi.json', undefined, {});
    expect(status).toBe(200);
    expect(contentType).toBe('application/json');
    const result = await new Validator().validate(body);
    expect(result.errors ?? []).toEqual([]);
    expect(body.info.version).toBe(String((await call('GET', '/api/v1/info', undefined, {})).body.apiVersion));
    expect(Object.keys(body.paths)).toEqual(
      expect.arrayContaining(['/tasks', '/tasks/{id}/pause', '/tasks/{id}/logs']),
    );

    const refused = await call('POST', '/openapi.json', {});
    expect(refused.status).toBe(405);
    expect(refused.contentType).toBe(problemType);
    expect(refused.headers.get('allow')).toBe('GET, HEAD');
    expect(refused.body).toMatchObject({ status: 405, code: 'METHOD_NOT_SUPPORTED', instance: '/openapi.json' });
  });

  it('answers the same task over REST and tRPC', async () => {
    const created = await call('POST', '/api/v1/tasks', {
      name: 'same',
      prompt: 'p',
      agentUrl: agent.url,
      sendPrompt: false,
    });
    expect(created.status).toBe(200);
    const id: string = created.body.task.id;
    await until(id, 'active');
    const rest = await call('GET', `/api/v1/tasks/${id}`);
    const trpc = await apiClient(url, testAdminToken).tasks.get.query({ id });
    expect(trpc.createdAt).toBeInstanceOf(Date);
    // The same task; REST's dates are the ISO strings of tRPC's Dates.
    expect(rest.body).toEqual(JSON.parse(JSON.stringify(trpc)));
    const listed = await call('GET', `/api/v1/tasks?limit=1&status=active`);
    expect(listed.body.items[0]).toEqual(rest.body);

    // A JSON body with a charset is JSON; a list in the query repeats its name.
    const patched = await fetch(`${url}/api/v1/tasks/${id}`, {
      method: 'PATCH',
      headers: { ...auth, 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ idleTimeoutSeconds: 600 }),
    });
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { idleTimeoutSeconds: number }).idleTimeoutSeconds).toBe(600);
    expect((await apiClient(url, testAdminToken).tasks.get.query({ id })).idleTimeoutSeconds).toBe(600);
    const events = await call('GET', `/api/v1/events?taskId=${id}&types=task.created&types=task.paused&limit=10`);
    expect(events.status).toBe(200);
    expect(events.body.items.map((e: { type: string }) => e.type)).toEqual(['task.created']);
    expect(events.body.items[0].occurredAt).toMatch(isoDate);
  });

  it('keeps a task alive and cancels a queued message', async () => {
    const created = await call('POST', '/api/v1/tasks', {
      name: 'inbox',
      prompt: 'p',
      agentUrl: agent.url,
      sendPrompt: false,
    });
    const id: string = created.body.task.id;
    await until(id, 'active');

    const before = Date.now();
    const kept = await call('POST', `/api/v1/tasks/${id}/keep-alive`, { forSeconds: 600 });
    const after = Date.now();
    expect(kept.status).toBe(200);
    expect(kept.body.keepAliveUntil).toMatch(isoDate);
    // 600 s from when the server took the call, which was between `before` and `after` (a second
    // either side for the database's clock and rounding).
    const keptUntil = Date.parse(kept.body.keepAliveUntil);
    expect(keptUntil).toBeGreaterThanOrEqual(before + 599_000);
    expect(keptUntil).toBeLessThanOrEqual(after + 601_000);
    expect(kept.body.task.keepAliveUntil).toBe(kept.body.keepAliveUntil);

    agent.status = 'running'; // a busy agent: the message waits in the inbox
    try {
      const sent = await call('POST', `/api/v1/tasks/${id}/send`, { input: 'later' });
      expect(sent.body).toMatchObject({ queued: true });
      const route = `/api/v1/tasks/${id}/messages/${sent.body.messageId}/cancel`;
      // A delivery attempt holds the message while it asks the busy agent: a cancel then is refused
      // as "being delivered", and a client tries again.
      const cancelled = await vi.waitFor(
        async () => {
          const answer = await call('POST', route);
          if (answer.status === 409 && /being delivered/.test(answer.body.detail)) throw new Error('being delivered');
          return answer;
        },
        { timeout: 60_000, interval: 50 },
      );
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ messageId: sent.body.messageId, status: 'cancelled' });
      expect(cancelled.body.cancelledAt).toMatch(isoDate);
      const again = await call('POST', route);
      expect(again.status).toBe(409);
      expect(again.contentType).toBe(problemType);
      expect(again.body.detail).toMatch(/already cancelled/);
    } finally {
      agent.status = 'stable';
    }
  });

  it('answers errors as problem+json and changes nothing', async () => {
    const created = await call('POST', '/api/v1/tasks', {
      name: 'errors',
      prompt: 'p',
      agentUrl: agent.url,
      sendPrompt: false,
    });
    const id: string = created.body.task.id;
    await until(id, 'active');
    const expectProblem = (answer: Awaited<ReturnType<typeof call>>, status: number, code: string) => {
      expect(answer.status).toBe(status);
      expect(answer.contentType).toBe(problemType);
      expect(answer.body).toMatchObject({ type: 'about:blank', status, code, requestId: expect.any(String) });
      expect(answer.headers.get('x-request-id')).toBe(answer.body.requestId);
      return answer.body;
    };

    // A wrong id: not a UUID, or nobody's task.
    const malformed = expectProblem(await call('GET', '/api/v1/tasks/not-a-task'), 400, 'BAD_REQUEST');
    expect(malformed).toMatchObject({
      detail: 'id: must be a UUID',
      issues: [{ path: ['id'], message: 'must be a UUID' }],
    });
    const unknown = '00000000-0000-4000-8000-000000000000';
    const missing = expectProblem(await call('POST', `/api/v1/tasks/${unknown}/pause`), 404, 'NOT_FOUND');
    expect(missing).toMatchObject({ detail: `task ${unknown} not found`, instance: `/api/v1/tasks/${unknown}/pause` });

    // A bad body: not JSON, not an object, a field of the wrong type (no coercion: "false" is not false).
    expect(
      expectProblem(await call('POST', `/api/v1/tasks/${id}/pause`, '{"wait":'), 400, 'BAD_REQUEST').detail,
    ).toMatch(/^the body is not valid JSON/);
    expect(expectProblem(await call('POST', `/api/v1/tasks/${id}/pause`, '[1]'), 400, 'BAD_REQUEST').detail).toBe(
      'the body must be a JSON object',
    );
    const wrongType = expectProblem(
      await call('POST', `/api/v1/tasks/${id}/pause`, { wait: 'false' }),
      400,
      'BAD_REQUEST',
    );
    expect(wrongType.issues).toEqual([expect.objectContaining({ path: ['wait'] })]);
    const notJson = await fetch(`${url}/api/v1/tasks/${id}/pause`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(notJson.status).toBe(415);
    expect(notJson.headers.get('content-type')).toBe(problemType);
    expectProblem(await call('GET', '/api/v1/tasks?limit=many'), 400, 'BAD_REQUEST');

    // No key, a forged key, a malformed Authorization header.
    expect(expectProblem(await call('GET', `/api/v1/tasks/${id}`, undefined, {}), 401, 'UNAUTHORIZED').detail).toBe(
      'an API key is required: send it as "Authorization: Bearer <key>"',
    );
    const forged = { authorization: 'Bearer hiatus_forged-forged-forged-forged-forged-0000' };
    expect(expectProblem(await call('POST', `/api/v1/tasks/${id}/pause`, {}, forged), 401, 'UNAUTHORIZED').detail).toBe(
      'the API key is not valid: unknown, expired or revoked',
    );
    expectProblem(await call('GET', '/api/v1/me', undefined, { authorization: 'Basic abc' }), 401, 'UNAUTHORIZED');

    // An oversized body (HIATUS_MAX_BODY_BYTES is 64 KiB here), by its length and by what arrives.
    const huge = { id, input: 'x'.repeat(70_000) };
    expectProblem(await call('POST', `/api/v1/tasks/${id}/send`, huge), 413, 'PAYLOAD_TOO_LARGE');
    const streamed = await fetch(`${url}/api/v1/tasks/${id}/send`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: new Blob([JSON.stringify(huge)]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE');

    // Paths and methods that do not exist.
    expectProblem(await call('GET', '/api/v1/tasks/x/y/z'), 404, 'NOT_FOUND');
    const put = await call('PUT', `/api/v1/tasks/${id}`, {});
    expectProblem(put, 405, 'METHOD_NOT_SUPPORTED');
    expect(put.headers.get('allow')?.split(', ').sort()).toEqual(['DELETE', 'GET', 'PATCH']);

    // A pause of a paused task: 409 with a plain detail.
    expect((await call('POST', `/api/v1/tasks/${id}/pause`, { wait: true })).body.task.status).toBe('paused');
    const again = expectProblem(await call('POST', `/api/v1/tasks/${id}/pause`), 409, 'CONFLICT');
    expect(again.detail).toBe(`cannot pause task ${id}: it is paused (pause is allowed when active)`);
    expect(again.issues).toBeUndefined();

    // None of it changed anything: no message reached the agent, one pause build only.
    expect(agent.received).toEqual([]);
    const builds = await call('GET', `/api/v1/tasks/${id}/builds`);
    expect(builds.body.items.map((b: { transition: string }) => b.transition)).toEqual(['stop', 'start']);
  }, 60_000);
});

describe('REST calls and the rate limit', () => {
  let running: TestServer;
  beforeAll(async () => {
    // A bucket of 2 calls that refills once in 100 s.
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_RATE_LIMIT_PER_SECOND: '0.01',
      HIATUS_RATE_LIMIT_BURST: '2',
      HIATUS_MAX_BATCH_SIZE: '2',
    });
  });
  afterAll(() => running.close());

  it('counts a REST call as one call, and answers 429 with Retry-After as problem+json', async () => {
    const get = () =>
      fetch(`${running.server.url}/api/v1/me?batch=1`, { headers: { authorization: `Bearer ${testAdminToken}` } });
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    const refused = await get();
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toBe(problemType);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused.json()).toMatchObject({ status: 429, code: 'TOO_MANY_REQUESTS', title: 'Too Many Requests' });
  });
});
