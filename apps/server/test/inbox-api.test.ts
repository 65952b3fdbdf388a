import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient, codeOf } from './api-client.ts';
import { testBackends } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from './test-server.ts';

// The inbox and keep-alive as a client sees them: the answers' shapes and codes over real HTTP.
describe.each(testBackends())('send, cancelMessage and keepAlive over HTTP on %s', (backend) => {
  let running: TestServer;
  let agent: FakeAgent;
  let api: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    running = await startTestServer(backend);
    agent = (await new FakeAgent().start()).say(2);
    api = apiClient(running.server.url, testAdminToken);
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  const activeTask = async (name: string) => {
    const { task } = await api.tasks.create.mutate({ name, prompt: 'p', agentUrl: agent.url, sendPrompt: false });
    await vi.waitFor(async () => expect((await api.tasks.get.query({ id: task.id })).status).toBe('active'), {
      timeout: 30_000,
      interval: 50,
    });
    return task.id;
  };

  it('queues for a busy agent, lists the message as pending, cancels it, and delivers the rest once stable', async () => {
    const id = await activeTask('busy-over-http');
    agent.status = 'running';
    const kept = await api.tasks.send.mutate({ id, input: 'keep' });
    const dropped = await api.tasks.send.mutate({ id, input: 'drop' });
    if (!kept.queued || !dropped.queued) throw new Error('both should be queued');
    const logs = await api.tasks.logs.query({ id });
    expect(logs.pending.map((p) => [p.messageId, p.content])).toEqual([
      [kept.messageId, 'keep'],
      [dropped.messageId, 'drop'],
    ]);
    expect(await api.tasks.cancelMessage.mutate({ id, messageId: dropped.messageId })).toMatchObject({
      status: 'cancelled',
    });
    expect(await codeOf(api.tasks.cancelMessage.mutate({ id, messageId: dropped.messageId }))).toBe('CONFLICT');
    expect(await codeOf(api.tasks.cancelMessage.mutate({ id, messageId: crypto.randomUUID() }))).toBe('NOT_FOUND');

    agent.status = 'stable';
    await vi.waitFor(async () => expect((await api.tasks.logs.query({ id })).pending).toEqual([]), {
      timeout: 30_000,
      interval: 50,
    });
    expect(agent.received).toEqual(['keep']);
    expect(await codeOf(api.tasks.cancelMessage.mutate({ id, messageId: kept.messageId }))).toBe('CONFLICT');
    // Now nothing waits and the agent is stable: the next send goes at once.
    expect(await api.tasks.send.mutate({ id, input: 'now' })).toMatchObject({ queued: false, resumed: false });
    expect(agent.received).toEqual(['keep', 'now']);
  });

  it('shows pending messages by their start and their count, and each whole through tasks.message', async () => {
    const id = await activeTask('full-inbox');
    agent.status = 'running';
    // A few more than a page shows, each far longer than its preview (é: two bytes in UTF-8).
    const body = (n: number) => `${n}:${'é'.repeat(10_000)}`;
    const sent: string[] = [];
    for (let n = 0; n < 105; n++) {
      const answer = await api.tasks.send.mutate({ id, input: body(n) });
      if (!answer.queued) throw new Error('the busy agent should not take it');
      sent.push(answer.messageId);
    }
    const page = await api.tasks.logs.query({ id, limit: 1 });
    expect(page.pendingCount).toBe(105);
    expect(page.pending.map((p) => p.messageId)).toEqual(sent.slice(0, 100));
    for (const [n, p] of page.pending.entries()) {
      expect(p).toMatchObject({ truncated: true, bytes: Buffer.byteLength(body(n)) });
      expect(p.content).toBe(body(n).slice(0, 1_000));
    }
    // The whole page is a fraction of the inbox it describes (105 × 20 KB).
    const raw = await fetch(
      `${running.server.url}/trpc/tasks.logs?input=${encodeURIComponent(JSON.stringify({ json: { id, limit: 1 } }))}`,
      { headers: { authorization: `Bearer ${testAdminToken}` } },
    );
    expect((await raw.arrayBuffer()).byteLength).toBeLessThan((105 * 20_000) / 4);

    expect(await api.tasks.message.query({ id, messageId: sent[104]! })).toMatchObject({
      messageId: sent[104],
      status: 'queued',
      content: body(104),
    });
    expect(await codeOf(api.tasks.message.query({ id, messageId: crypto.randomUUID() }))).toBe('NOT_FOUND');
    const { key } = await api.apiKeys.create.mutate({
      userId: (await api.users.create.mutate({ username: 'someone-else' })).id,
    });
    expect(await codeOf(apiClient(running.server.url, key).tasks.message.query({ id, messageId: sent[0]! }))).toBe(
      'NOT_FOUND',
    );

    // The inbox's tail is never being delivered (the head is tried first): cancelled, it is still there.
    await api.tasks.cancelMessage.mutate({ id, messageId: sent[104]! });
    expect(await api.tasks.message.query({ id, messageId: sent[104]! })).toMatchObject({ status: 'cancelled' });
    expect((await api.tasks.logs.query({ id, limit: 1 })).pendingCount).toBe(104);

    // A short message is shown whole, and once delivered it is still there, delivered.
    const other = await activeTask('short-inbox');
    const short = await api.tasks.send.mutate({ id: other, input: 'short' });
    if (!short.queued) throw new Error('the busy agent should not take it');
    expect((await api.tasks.logs.query({ id: other })).pending).toEqual([
      expect.objectContaining({ messageId: short.messageId, content: 'short', truncated: false, bytes: 5 }),
    ]);
    agent.status = 'stable';
    await vi.waitFor(
      async () =>
        expect((await api.tasks.message.query({ id: other, messageId: short.messageId })).status).toBe('delivered'),
      { timeout: 30_000, interval: 50 },
    );
  });

  it('keeps a task alive within bounds, and refuses a paused one', async () => {
    const id = await activeTask('kept-over-http');
    const before = Date.now();
    const kept = await api.tasks.keepAlive.mutate({ id, forSeconds: 120 });
    const after = Date.now();
    expect(kept.task.keepAliveUntil).toEqual(kept.keepAliveUntil);
    // 120 s from when the server took the call (a second either side for the database's clock).
    expect(kept.keepAliveUntil.getTime()).toBeGreaterThanOrEqual(before + 119_000);
    expect(kept.keepAliveUntil.getTime()).toBeLessThanOrEqual(after + 121_000);
    expect(await codeOf(api.tasks.keepAlive.mutate({ id, forSeconds: 0 }))).toBe('BAD_REQUEST');
    expect(await codeOf(api.tasks.keepAlive.mutate({ id, forSeconds: 86_401 }))).toBe('BAD_REQUEST');
    await api.tasks.pause.mutate({ id, wait: true });
    expect(await codeOf(api.tasks.keepAlive.mutate({ id }))).toBe('CONFLICT');
    expect((await api.tasks.get.query({ id })).status).toBe('paused');
  });
});
