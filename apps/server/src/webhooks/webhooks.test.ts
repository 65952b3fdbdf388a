import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyWebhook, WebhookVerificationError } from '../../../../packages/client/src/webhooks.ts';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { WebhookReceiver } from '../../test/webhook-receiver.ts';
import type { UserActor } from '../domain/actor.ts';
import { meteredPause, meteredResume } from '../lifecycle/metered.ts';
import { createLogger } from '../logger.ts';
import type { StopLoop } from '../loops.ts';
import { createMetrics } from '../telemetry/metrics.ts';
import { type DeliveryOptions, nextAttemptAt, startWebhookDelivery } from './delivery.ts';
import {
  createWebhook,
  listWebhooksFor,
  redeliver,
  removeWebhook,
  testWebhook,
  webhookDeliveries,
} from './endpoints.ts';

/** Waits on a condition; generous, since it costs nothing when the condition holds early. */
const patience = { timeout: 30_000, interval: 25 };

/** Retries within a test's patience; an endpoint's answer waited for long enough never to time out here. */
const quick: DeliveryOptions = {
  concurrency: 8,
  timeoutMs: 30_000,
  retryBaseMs: 50,
  retryMaxMs: 200,
  retryForMs: 60_000,
  pollMs: 50,
};

describe.each(testBackends())('webhooks on %s', (backend) => {
  const h = useHarness(backend);
  const receiver = new WebhookReceiver();
  const workers: StopLoop[] = [];
  const deliver = (options: Partial<DeliveryOptions> = {}, app = h.app) => {
    workers.push(startWebhookDelivery(app, { ...quick, ...options, log: createLogger('silent') }));
  };

  beforeAll(async () => {
    await receiver.start();
  });
  afterAll(() => receiver.stop());
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((stop) => stop()));
    receiver.received = [];
    receiver.answers = [];
    receiver.status = 200;
    receiver.hang = false;
  });

  /** A fresh member with an endpoint of their own on the receiver. */
  const subscriber = async (eventTypes?: Parameters<typeof createWebhook>[2]['eventTypes']) => {
    const owner = (await h.member()) as UserActor;
    const webhook = await createWebhook(h.app, owner, { url: receiver.url, eventTypes });
    return { owner, webhook };
  };
  const forTask = (taskId: string) => receiver.delivered().filter((e) => e.taskId === taskId);
  /**
   * Waits until none of the endpoints' deliveries is pending (each was made with its event, in the
   * same transaction), then stops the workers, so no attempt is in flight: what the receiver holds
   * then is all it will ever get for them.
   */
  const drain = async (...webhookIds: string[]) => {
    await vi.waitFor(async () => {
      const pending = await h.db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('webhook_id', 'in', webhookIds)
        .where('status', '=', 'pending')
        .execute();
      expect(pending).toEqual([]);
    }, patience);
    await Promise.all(workers.splice(0).map((stop) => stop()));
  };

  it('delivers exactly the events of each change, signed so that verifyWebhook accepts them', async () => {
    const { owner, webhook } = await subscriber();
    expect(webhook.secret).toMatch(/^whsec_/);
    expect(await listWebhooksFor(h.app, owner)).toEqual([expect.not.objectContaining({ secret: expect.anything() })]);
    deliver();
    const task = await h.task({ owner, status: 'paused' });
    await meteredResume(h.app, owner, task.id);
    await h.settle();
    await drain(webhook.id);
    expect(forTask(task.id).map((e) => e.type)).toEqual([
      'task.created',
      'task.pausing',
      'task.paused',
      'task.resuming',
      'task.resumed',
    ]);
    for (const request of receiver.received) {
      const event = verifyWebhook(request.rawBody, request.headers, webhook.secret);
      expect(event.taskId).toBe(task.id);
      expect(request.headers['hiatus-event-id']).toBe(event.id);
    }
    const first = receiver.received[0]!;
    expect(() => verifyWebhook(first.rawBody, first.headers, 'whsec_wrong')).toThrow(WebhookVerificationError);
    expect(() => verifyWebhook(`${first.rawBody} `, first.headers, webhook.secret)).toThrow(/does not match/);
    expect(() => verifyWebhook(first.rawBody, first.headers, webhook.secret, { now: Date.now() + 3_600_000 })).toThrow(
      /replay/,
    );
  });

  it('retries a failing endpoint with backoff and records each attempt; redelivers on request', async () => {
    const { owner, webhook } = await subscriber(['task.created']);
    receiver.answers = [500, 500, 500];
    deliver();
    const task = await h.task({ owner, status: 'pending' });
    await drain(webhook.id);
    expect(receiver.received.map((r) => r.status)).toEqual([500, 500, 500, 200]);
    const deliveries = () => webhookDeliveries(h.app, owner, webhook.id, { limit: 10 });
    const { items } = await deliveries();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ status: 'delivered', eventType: 'task.created', taskId: task.id });
    expect(items[0]!.attempts.map((a) => a.statusCode)).toEqual([500, 500, 500, 200]);
    expect(items[0]!.attempts.every((a) => a.durationMs >= 0)).toBe(true);

    deliver();
    await redeliver(h.app, owner, webhook.id, items[0]!.id);
    await drain(webhook.id);
    expect(forTask(task.id)).toHaveLength(2);
    expect(new Set(forTask(task.id).map((e) => e.id)).size).toBe(1);
  });

  it('gives up after the retry window and marks the endpoint failing; a success clears the mark', async () => {
    const { owner, webhook } = await subscriber(['task.created']);
    receiver.status = 503;
    deliver({ retryForMs: 300 });
    await h.task({ owner, status: 'pending' });
    const failed = async () => (await webhookDeliveries(h.app, owner, webhook.id, { limit: 10 })).items[0]?.status;
    await vi.waitFor(async () => expect(await failed()).toBe('failed'), patience);
    expect((await listWebhooksFor(h.app, owner))[0]?.failingSince).toBeInstanceOf(Date);

    receiver.status = 200;
    await testWebhook(h.app, owner, webhook.id);
    await drain(webhook.id);
    expect(receiver.delivered().map((e) => e.type)).toEqual(['webhook.test']);
    expect((await listWebhooksFor(h.app, owner))[0]?.failingSince).toBeNull();
  });

  it('keeps each task in order for an endpoint while an earlier event is retried', async () => {
    const { owner, webhook } = await subscriber();
    receiver.answers = [500, 500];
    deliver();
    const task = await h.task({ owner, status: 'paused' });
    await drain(webhook.id);
    expect(forTask(task.id).map((e) => e.type)).toEqual(['task.created', 'task.pausing', 'task.paused']);
  });

  it('sends a member their own tasks only, and an admin every task', async () => {
    const a = await subscriber();
    const b = await subscriber();
    const admin = (await h.member('admin')) as UserActor;
    const adminHook = await createWebhook(h.app, admin, { url: receiver.url, eventTypes: ['task.created'] });
    deliver();
    const taskOfA = await h.task({ owner: a.owner, status: 'pending' });
    await drain(a.webhook.id, b.webhook.id, adminHook.id);
    expect(forTask(taskOfA.id)).toHaveLength(2);
    const signedWith = (secret: string) =>
      receiver.received.filter((r) => {
        try {
          verifyWebhook(r.rawBody, r.headers, secret);
          return true;
        } catch {
          return false;
        }
      }).length;
    expect(signedWith(a.webhook.secret)).toBe(1);
    expect(signedWith(adminHook.secret)).toBe(1);
    expect(signedWith(b.webhook.secret)).toBe(0);
    // Later tests count deliveries: the admin's endpoint would get theirs too.
    await removeWebhook(h.app, admin, adminHook.id);
  });

  it('shares deliveries between processes: each event goes out once per endpoint', async () => {
    const { owner, webhook } = await subscriber(['task.created']);
    deliver({ concurrency: 2 });
    deliver({ concurrency: 2 }, h.otherApp());
    const tasks = await Promise.all(Array.from({ length: 20 }, () => h.task({ owner, status: 'pending' })));
    // Both workers stopped: an event claimed twice would have been sent twice by now.
    await drain(webhook.id);
    const ids = receiver.delivered().map((e) => e.id);
    expect(ids).toHaveLength(20);
    expect(new Set(ids).size).toBe(20);
    expect(new Set(receiver.delivered().map((e) => e.taskId))).toEqual(new Set(tasks.map((t) => t.id)));
  });

  it('refuses an endpoint on a cloud metadata address', async () => {
    const owner = (await h.member()) as UserActor;
    await expect(createWebhook(h.app, owner, { url: 'http://169.254.169.254/latest' })).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringContaining('metadata'),
    });
  });

  it('backs off exponentially with jitter and stops after the retry window', () => {
    const created = new Date(0);
    const options = { retryBaseMs: 1_000, retryMaxMs: 8_000, retryForMs: 60_000 };
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) => nextAttemptAt({ attempt, createdAt: created }, options, 0)!);
    delays.forEach((at, i) => {
      const ceiling = Math.min(8_000, 1_000 * 2 ** i);
      expect(at.getTime()).toBeGreaterThanOrEqual(ceiling / 2);
      expect(at.getTime()).toBeLessThanOrEqual(ceiling);
    });
    expect(nextAttemptAt({ attempt: 9, createdAt: created }, options, 59_000)).toBeNull();
  });

  it('does not deliver a member pausing their task to another member, even with a metered pause', async () => {
    const a = await subscriber(['task.pausing']);
    const b = await subscriber(['task.pausing']);
    deliver();
    const task = await h.task({ owner: a.owner });
    await meteredPause(h.app, a.owner, task.id, { reason: 'task_manual_pause' });
    await drain(a.webhook.id, b.webhook.id);
    expect(receiver.received.filter((r) => r.rawBody.includes(task.id))).toHaveLength(1);
    expect(() =>
      verifyWebhook(receiver.received[0]!.rawBody, receiver.received[0]!.headers, b.webhook.secret),
    ).toThrow();
  });

  it('counts deliveries by outcome, their latency, and the age of the oldest undelivered event', async () => {
    const metrics = createMetrics(h.app);
    try {
      const { owner, webhook } = await subscriber(['task.created']);
      receiver.answers = [500];
      // Nobody delivers yet: the event waits, and the gauge says since when (an hour: made so, not waited for).
      const task = await h.task({ owner, status: 'pending' });
      await h.db
        .updateTable('task_events')
        .set({ occurred_at: sql`NOW() - interval '1 hour'` })
        .where('task_id', '=', task.id)
        .execute();
      expect(await metrics.registry.metrics()).toMatch(/^hiatus_webhook_oldest_undelivered_seconds (\d+\.?\d*)$/m);
      const age = Number(
        /^hiatus_webhook_oldest_undelivered_seconds (\S+)$/m.exec(await metrics.registry.metrics())![1],
      );
      expect(age).toBeGreaterThanOrEqual(3600);
      deliver();
      await drain(webhook.id);
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/hiatus_webhook_deliveries_total\{outcome="retrying"\} 1/);
      expect(text).toMatch(/hiatus_webhook_deliveries_total\{outcome="delivered"\} 1/);
      expect(text).toMatch(/hiatus_webhook_delivery_latency_seconds_count 1/);
      expect(text).toMatch(/^hiatus_webhook_oldest_undelivered_seconds 0$/m);
    } finally {
      metrics.stop();
    }
  });
});
