import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyWebhook } from '../../../../packages/client/src/webhooks.ts';
import { apiClient } from '../api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from '../databases.ts';
import { FakeAgent } from '../fake-agent.ts';
import { type ServerProcess, startServerProcess } from '../server-process.ts';
import { WebhookReceiver } from '../webhook-receiver.ts';

const adminToken = 'webhook-fault-admin-token-6f1d9c2b7a4e8035';

// The outbox's promise: an event committed by a server that dies before delivering it is
// delivered by the next server that runs, and once per endpoint when several run.
describe.runIf(postgresServerUrl())('webhooks when a server dies between commit and delivery', () => {
  let database: TestDatabase;
  let env: Record<string, string>;
  const processes: ServerProcess[] = [];
  const receiver = new WebhookReceiver();
  let agent: FakeAgent;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    env = {
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      // A hung endpoint's lease runs out soon, so the next server may take the delivery again.
      HIATUS_WEBHOOK_TIMEOUT_MS: '1000',
      HIATUS_WEBHOOK_RETRY_BASE_MS: '100',
    };
    await receiver.start();
    agent = await new FakeAgent().start();
  }, 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await receiver.stop();
    await agent.stop();
    await database.drop();
  });

  it('delivers after a restart what a SIGKILLed server committed, then once per endpoint with two servers', async () => {
    const first = await startServerProcess(env);
    processes.push(first);
    const api = apiClient(first.url, adminToken);
    const hook = await api.webhooks.create.mutate({ url: receiver.url, eventTypes: ['task.created'] });

    // The endpoint takes the request and never answers: the server dies holding the delivery.
    receiver.hang = true;
    const { task } = await api.tasks.create.mutate({ name: 'doomed', prompt: 'p', agentUrl: agent.url });
    // Killed only once the endpoint holds the request: the delivery is in flight when the server dies.
    await receiver.until(() => receiver.received.length > 0, 30_000);
    await first.kill();
    receiver.hang = false;

    const second = await startServerProcess(env);
    const third = await startServerProcess(env);
    processes.push(second, third);
    await receiver.until(() => receiver.delivered().some((e) => e.taskId === task.id), 30_000);
    expect(receiver.received[0]?.status).toBe(0);
    const delivered = receiver.received.filter((r) => r.status === 200);
    expect(delivered).toHaveLength(1);
    expect(verifyWebhook(delivered[0]!.rawBody, delivered[0]!.headers, hook.secret)).toMatchObject({
      type: 'task.created',
      taskId: task.id,
    });

    // Two live servers share the work: each event reaches the endpoint once.
    const apis = [apiClient(second.url, adminToken), apiClient(third.url, adminToken)];
    const created = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        apis[i % 2]!.tasks.create.mutate({ name: `shared-${i}`, prompt: 'p', agentUrl: agent.url }),
      ),
    );
    const ids = new Set(created.map((c) => c.task.id));
    await receiver.until(() => receiver.delivered().filter((e) => ids.has(e.taskId ?? '')).length >= 30, 30_000);
    // Nothing is left to deliver, so what the endpoint holds now is final: no late duplicate.
    const db = database.open();
    await vi.waitFor(
      async () => {
        const pending = await db
          .selectFrom('webhook_deliveries')
          .select('id')
          .where('webhook_id', '=', hook.id)
          .where('status', '=', 'pending')
          .execute();
        expect(pending).toEqual([]);
      },
      { timeout: 30_000, interval: 100 },
    );
    const shared = receiver.delivered().filter((e) => ids.has(e.taskId ?? ''));
    expect(shared).toHaveLength(30);
    expect(new Set(shared.map((e) => e.id)).size).toBe(30);
  }, 120_000);
});
