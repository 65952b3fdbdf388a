import type { App } from '../app.ts';
import { type AttemptOutcome, type ClaimedDelivery, claimDeliveries, recordAttempt } from '../db/webhooks.ts';
import type { HiatusEvent } from '../domain/events.ts';
import { ChangeWaiter } from '../lifecycle/changes.ts';
import type { Logger } from '../logger.ts';
import type { StopLoop } from '../loops.ts';
import { signatureHeader, signPayload } from './signature.ts';

export type DeliveryOptions = {
  /** Deliveries sent at once by this process. */
  concurrency: number;
  /** Longest wait for an endpoint's answer. */
  timeoutMs: number;
  /** The first retry's delay; each next one doubles, with jitter, up to `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** A delivery still failing this long after its event is given up and its endpoint marked failing. */
  retryForMs: number;
  /** How often to look for due deliveries when nothing wakes the worker (retries, other processes). */
  pollMs: number;
};

/** The JSON an endpoint receives: the event as recorded. */
function deliveryBody(event: HiatusEvent): string {
  return JSON.stringify({
    id: event.id,
    type: event.type,
    occurredAt: event.occurredAt.toISOString(),
    taskId: event.taskId,
    ownerId: event.ownerId,
    payload: event.payload,
  });
}

/**
 * Delivers webhook events: claims due deliveries (SKIP LOCKED, so every server process can run
 * this and each delivery goes to one), posts them signed, and records each attempt. Woken at once
 * by changes committed in this process or announced by another; else it looks every `pollMs`.
 */
export function startWebhookDelivery(
  app: Pick<App, 'db' | 'events' | 'postWebhook'>,
  options: DeliveryOptions & { log: Logger },
): StopLoop {
  const stop = new AbortController();
  // A lease outlives the longest attempt (and its bookkeeping), so a live worker never loses a
  // delivery to another; a dead worker's deliveries are taken again once it runs out.
  const leaseMs = options.timeoutMs * 2 + 5_000;
  // Woken by new events (here or announced by another process), listening for the loop's whole
  // life: an event committed while a pass runs still wakes the next wait.
  const waiter = new ChangeWaiter(app, (notice) => notice.eventId !== undefined);
  const loop = (async () => {
    while (!stop.signal.aborted) {
      try {
        const claimed = await claimDeliveries(app.db, options.concurrency, leaseMs);
        if (claimed.length > 0) {
          await Promise.all(claimed.map((delivery) => attempt(app, delivery, options)));
          continue;
        }
      } catch (error) {
        if (stop.signal.aborted) break;
        options.log.warn({ err: error }, 'webhook delivery pass failed');
      }
      await waiter.wait(options.pollMs, stop.signal);
    }
  })().finally(() => waiter.close());
  return async () => {
    stop.abort();
    await loop;
  };
}

async function attempt(
  app: Pick<App, 'db' | 'events' | 'postWebhook'>,
  delivery: ClaimedDelivery,
  options: DeliveryOptions,
): Promise<void> {
  const body = deliveryBody(delivery.event);
  const started = performance.now();
  let outcome: AttemptOutcome;
  try {
    const status = await app.postWebhook(delivery.url, {
      body,
      timeoutMs: options.timeoutMs,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Hiatus-Webhooks/1',
        'hiatus-event-id': delivery.event.id,
        'hiatus-event-type': delivery.event.type,
        'hiatus-delivery-id': delivery.id,
        [signatureHeader]: signPayload(delivery.secret, Math.floor(Date.now() / 1000), body),
      },
    });
    const ok = status >= 200 && status < 300;
    outcome = {
      statusCode: status,
      durationMs: performance.now() - started,
      error: ok ? null : `the endpoint answered status ${status}`,
    };
  } catch (error) {
    outcome = { statusCode: null, durationMs: performance.now() - started, error: (error as Error).message };
  }
  const retryAt = outcome.error === null ? null : nextAttemptAt(delivery, options);
  // The attempt and what follows from it, together.
  await app.db.transaction().execute((trx) => recordAttempt(trx, delivery, outcome, retryAt));
  app.events.emit('delivery', {
    outcome: outcome.error === null ? 'delivered' : retryAt ? 'retrying' : 'failed',
    durationMs: outcome.durationMs,
    latencyMs: Date.now() - delivery.event.occurredAt.getTime(),
  });
}

/** Exponential backoff, the second half of each delay random (jitter); null once the delivery has been tried for `retryForMs`. */
export function nextAttemptAt(
  delivery: Pick<ClaimedDelivery, 'attempt' | 'createdAt'>,
  options: Pick<DeliveryOptions, 'retryBaseMs' | 'retryMaxMs' | 'retryForMs'>,
  now: number = Date.now(),
): Date | null {
  const ceiling = Math.min(options.retryMaxMs, options.retryBaseMs * 2 ** Math.min(delivery.attempt - 1, 30));
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  const at = now + delay;
  return at - delivery.createdAt.getTime() > options.retryForMs ? null : new Date(at);
}
