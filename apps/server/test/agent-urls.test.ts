import { TRPCClientError } from '@trpc/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from './api-client.ts';
import { testBackends } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from './test-server.ts';

/** The API's answer to a call that must fail: its code, its message and the paths of its zod issues. */
async function refusal(call: Promise<unknown>) {
  const error = await call.then(
    () => expect.unreachable('the call succeeded'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TRPCClientError);
  const { message, data } = error as { message: string; data: unknown };
  const { code, zodIssues } = data as { code: string; zodIssues: Array<{ path: string[]; message: string }> | null };
  return { code, message, issues: zodIssues?.map((i) => `${i.path.join('.')}: ${i.message}`) ?? null };
}

describe.each(testBackends())("tasks.create's agent URL over HTTP on %s", (backend) => {
  let running: TestServer;
  let agent: FakeAgent;
  let alice: ReturnType<typeof apiClient>;
  const tasks = async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks`.execute(running.server.app.db)).rows[0]!.n;

  beforeAll(async () => {
    // The embedded default: no HIATUS_ALLOWED_AGENT_NETWORKS (the test servers' loopback allowance taken off).
    running = await startTestServer(backend, { HIATUS_ALLOWED_AGENT_NETWORKS: '' });
    agent = await new FakeAgent().start();
    const admin = apiClient(running.server.url, testAdminToken);
    const user = await admin.users.create.mutate({ username: 'alice' });
    alice = apiClient(running.server.url, (await admin.apiKeys.create.mutate({ userId: user.id })).key);
  });
  afterAll(async () => {
    await agent?.stop();
    await running?.close();
  });

  it('refuses a loopback, private or metadata agent by default with BAD_REQUEST naming the variable', async () => {
    const before = await tasks();
    const port = new URL(agent.url).port;
    for (const agentUrl of [
      agent.url,
      `http://localhost:${port}/`,
      `http://[::1]:${port}/`,
      `http://0x7f.1:${port}/`,
      'http://169.254.169.254/latest/meta-data/',
      'http://192.168.0.1/',
    ]) {
      const { code, message } = await refusal(alice.tasks.create.mutate({ name: 'x', prompt: '', agentUrl }));
      expect(code, agentUrl).toBe('BAD_REQUEST');
      expect(message).toMatch(/^agentUrl: the agent's address is not allowed: .*HIATUS_ALLOWED_AGENT_NETWORKS/);
    }
    expect(await tasks()).toBe(before);
  });

  it('refuses credentials in the URL and a scheme not in lowercase with BAD_REQUEST, storing nothing', async () => {
    const before = await tasks();
    const cases = [
      ['http://user:secret@agent.example/', 'agentUrl: must not carry credentials (user:password@)'],
      ['http://token@agent.example/', 'agentUrl: must not carry credentials (user:password@)'],
      ['HTTP://agent.example/', 'agentUrl: must start with http:// or https:// (in lowercase)'],
      ['hTTps://agent.example/', 'agentUrl: must start with http:// or https:// (in lowercase)'],
    ];
    for (const [agentUrl, issue] of cases) {
      const answer = await refusal(alice.tasks.create.mutate({ name: 'x', prompt: '', agentUrl: agentUrl! }));
      expect(answer, agentUrl).toMatchObject({ code: 'BAD_REQUEST', issues: [issue] });
      expect(answer.message).not.toContain('secret');
    }
    expect(await tasks()).toBe(before);
  });
});
