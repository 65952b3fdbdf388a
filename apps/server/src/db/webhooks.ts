import { sql } from 'kysely';
import type { EventType, HiatusEvent } from '../domain/events.ts';
import type { Db } from './connection.ts';

/** An endpoint as its owner sees it: never the secret, which is shown once at creation. */
export type Webhook = {
  id: string;
  ownerId: string;
  allTasks: boolean;
  url: string;
  eventTypes: EventType[];
  description: string;
  enabled: boolean;
  /** Since when deliveries to it have been given up on; null while it takes them. */
  failingSince: Date | null;
  createdAt: Date;
  updatedAt: Date;
};

const webhookColumns = [
  'id',
  'owner_id',
  'all_tasks',
  'url',
  'event_types',
  'description',
  'enabled',
  'failing_since',
  'created_at',
  'updated_at',
] as const;

export type NewWebhookRow = {
  ownerId: string;
  allTasks: boolean;
  url: string;
  eventTypes: readonly EventType[];
  secret: string;
  description: string;
};

export async function insertWebhook(trx: Db, row: NewWebhookRow): Promise<Webhook> {
  const inserted = await trx
    .insertInto('webhooks')
    .values({
      owner_id: row.ownerId,
      all_tasks: row.allTasks,
      url: row.url,
      event_types: [...row.eventTypes],
      secret: row.secret,
      description: row.description,
    })
    .returning(webhookColumns)
    .executeTakeFirstOrThrow();
  return toWebhook(inserted);
}

/** One endpoint, if it exists and (with `ownerId`) belongs to that owner. */
export async function findWebhook(
  db: Db,
  id: string,
  options: { ownerId?: string } = {},
): Promise<Webhook | undefined> {
  let query = db.selectFrom('webhooks').select(webhookColumns).where('id', '=', id);
  if (options.ownerId !== undefined) query = query.where('owner_id', '=', options.ownerId);
  const row = await query.executeTakeFirst();
  return row && toWebhook(row);
}

/** Endpoints, oldest first: an owner's, or (no owner) everyone's. */
export async function listWebhooks(db: Db, options: { ownerId?: string } = {}): Promise<Webhook[]> {
  let query = db.selectFrom('webhooks').select(webhookColumns).orderBy('created_at').orderBy('id');
  if (options.ownerId !== undefined) query = query.where('owner_id', '=', options.ownerId);
  return (await query.execute()).map(toWebhook);
}

export type WebhookChanges = {
  url?: string;
  eventTypes?: readonly EventType[];
  description?: string;
  enabled?: boolean;
};

export async function updateWebhook(trx: Db, id: string, changes: WebhookChanges): Promise<Webhook | undefined> {
  const row = await trx
    .updateTable('webhooks')
    .set({
      ...(changes.url === undefined ? {} : { url: changes.url }),
      ...(changes.eventTypes === undefined ? {} : { event_types: [...changes.eventTypes] }),
      ...(changes.description === undefined ? {} : { description: changes.description }),
      // Turning an endpoint back on gives it a fresh start.
      ...(changes.enabled === undefined ? {} : { enabled: changes.enabled, failing_since: null }),
      updated_at: sql`NOW()`,
    })
    .where('id', '=', id)
    .returning(webhookColumns)
    .executeTakeFirst();
  return row && toWebhook(row);
}

export async function deleteWebhook(trx: Db, id: string): Promise<boolean> {
  const result = await trx.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** Queues one event for one endpoint (a test event; lifecycle events are fanned out in db/events.ts). */
export async function insertDelivery(trx: Db, webhookId: string, eventId: string): Promise<string> {
  const row = await trx
    .insertInto('webhook_deliveries')
    .values({ webhook_id: webhookId, event_id: eventId, task_id: null })
    .returning('id')
    .executeTakeFirstOrThrow();
  return String(row.id);
}

/** A delivery a worker holds: the event, where it goes and the key it is signed with. */
export type ClaimedDelivery = {
  id: string;
  webhookId: string;
  url: string;
  secret: string;
  /** This attempt's number, from 1. */
  attempt: number;
  createdAt: Date;
  event: HiatusEvent;
};

/**
 * Takes up to `limit` due deliveries for `leaseMs`, skipping those another worker holds. A delivery
 * waits while an earlier event of the same task for the same endpoint is still pending (even if
 * backing off or held elsewhere): each endpoint sees a task's events in order.
 */
export async function claimDeliveries(db: Db, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
  const result = await sql<{
    id: string;
    webhook_id: string;
    url: string;
    secret: string;
    attempts: number;
    created_at: Date;
    event_id: string;
    type: string;
    task_id: string | null;
    owner_id: string;
    payload: unknown;
    occurred_at: Date;
  }>`
    WITH due AS (
      SELECT d.id FROM webhook_deliveries d
      WHERE d.status = 'pending' AND d.next_attempt_at <= NOW()
        AND (d.leased_until IS NULL OR d.leased_until < NOW())
        AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.webhook_id = d.webhook_id AND p.task_id = d.task_id
            AND p.status = 'pending' AND p.event_id < d.event_id)
      ORDER BY d.next_attempt_at, d.id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    ), claimed AS (
      UPDATE webhook_deliveries d
      SET leased_until = NOW() + make_interval(secs => ${leaseMs / 1000}), attempts = d.attempts + 1
      FROM due WHERE d.id = due.id
      RETURNING d.*
    )
    SELECT c.id, c.webhook_id, w.url, w.secret, c.attempts, c.created_at,
           e.id AS event_id, e.type, e.task_id, e.owner_id, e.payload, e.occurred_at
    FROM claimed c
    JOIN webhooks w ON w.id = c.webhook_id
    JOIN task_events e ON e.id = c.event_id
    ORDER BY c.event_id`.execute(db);
  return result.rows.map((r) => ({
    id: String(r.id),
    webhookId: r.webhook_id,
    url: r.url,
    secret: r.secret,
    attempt: r.attempts,
    createdAt: r.created_at,
    event: {
      id: String(r.event_id),
      type: r.type,
      taskId: r.task_id,
      ownerId: r.owner_id,
      payload: r.payload,
      occurredAt: r.occurred_at,
    } as HiatusEvent,
  }));
}

/** How one attempt went. */
export type AttemptOutcome = {
  statusCode: number | null;
  durationMs: number;
  /** Null when delivered; else why, in Hiatus's words. */
  error: string | null;
};

/**
 * Records an attempt and what follows: delivered; or tried again at `retryAt`; or (no `retryAt`)
 * given up, marking the endpoint failing. A success clears the endpoint's failing mark.
 */
export async function recordAttempt(
  trx: Db,
  delivery: { id: string; webhookId: string },
  outcome: AttemptOutcome,
  retryAt: Date | null,
): Promise<void> {
  await trx
    .insertInto('webhook_delivery_attempts')
    .values({
      delivery_id: delivery.id,
      status_code: outcome.statusCode,
      duration_ms: Math.round(outcome.durationMs),
      error: outcome.error?.slice(0, 500) ?? null,
    })
    .execute();
  const delivered = outcome.error === null;
  await trx
    .updateTable('webhook_deliveries')
    .set(
      delivered
        ? { status: 'delivered', delivered_at: sql`NOW()`, leased_until: null }
        : retryAt
          ? { next_attempt_at: retryAt, leased_until: null }
          : { status: 'failed', leased_until: null },
    )
    .where('id', '=', delivery.id)
    .where('status', '=', 'pending')
    .execute();
  if (delivered) {
    await trx
      .updateTable('webhooks')
      .set({ failing_since: null })
      .where('id', '=', delivery.webhookId)
      .where('failing_since', 'is not', null)
      .execute();
  } else if (!retryAt) {
    await trx
      .updateTable('webhooks')
      .set({ failing_since: sql`COALESCE(failing_since, NOW())` })
      .where('id', '=', delivery.webhookId)
      .execute();
  }
}

export type DeliveryRecord = {
  id: string;
  eventId: string;
  eventType: EventType;
  taskId: string | null;
  status: 'pending' | 'delivered' | 'failed';
  attempts: Array<{ at: Date; statusCode: number | null; durationMs: number; error: string | null }>;
  createdAt: Date;
  deliveredAt: Date | null;
  nextAttemptAt: Date | null;
};

/** An endpoint's deliveries, newest first, each with its attempts; `before` is the previous page's last id. */
export async function listDeliveries(
  db: Db,
  webhookId: string,
  page: { limit: number; before?: string },
): Promise<{ items: DeliveryRecord[]; more: boolean }> {
  let query = db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('task_events as e', 'e.id', 'd.event_id')
    .select([
      'd.id',
      'd.event_id',
      'e.type',
      'd.task_id',
      'd.status',
      'd.created_at',
      'd.delivered_at',
      'd.next_attempt_at',
    ])
    .where('d.webhook_id', '=', webhookId)
    .orderBy('d.id', 'desc')
    .limit(page.limit + 1);
  if (page.before !== undefined) query = query.where('d.id', '<', page.before);
  const rows = await query.execute();
  const items = rows.slice(0, page.limit);
  const attempts = items.length
    ? await db
        .selectFrom('webhook_delivery_attempts')
        .selectAll()
        .where(
          'delivery_id',
          'in',
          items.map((r) => r.id),
        )
        .orderBy('id')
        .execute()
    : [];
  return {
    more: rows.length > page.limit,
    items: items.map((r) => ({
      id: String(r.id),
      eventId: String(r.event_id),
      eventType: r.type as EventType,
      taskId: r.task_id,
      status: r.status,
      createdAt: r.created_at,
      deliveredAt: r.delivered_at,
      nextAttemptAt: r.status === 'pending' ? r.next_attempt_at : null,
      attempts: attempts
        .filter((a) => String(a.delivery_id) === String(r.id))
        .map((a) => ({ at: a.attempted_at, statusCode: a.status_code, durationMs: a.duration_ms, error: a.error })),
    })),
  };
}

/** Sends a delivery again from now, whatever became of it; false when the endpoint has no such delivery. */
export async function requeueDelivery(trx: Db, webhookId: string, deliveryId: string): Promise<boolean> {
  const result = await trx
    .updateTable('webhook_deliveries')
    .set({
      status: 'pending',
      next_attempt_at: sql`NOW()`,
      leased_until: null,
      delivered_at: null,
      created_at: sql`NOW()`,
    })
    .where('id', '=', deliveryId)
    .where('webhook_id', '=', webhookId)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Deliveries by status, and the age of the oldest pending one in seconds (0 when none), for metrics. */
export async function deliveryBacklog(db: Db): Promise<{ pending: number; oldestPendingSeconds: number }> {
  const row = await sql<{ pending: string; oldest: number | null }>`
    SELECT COUNT(*) AS pending, EXTRACT(EPOCH FROM NOW() - MIN(e.occurred_at))::float8 AS oldest
    FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id
    WHERE d.status = 'pending'`.execute(db);
  const first = row.rows[0];
  return { pending: Number(first?.pending ?? 0), oldestPendingSeconds: first?.oldest ?? 0 };
}

type WebhookRow = {
  id: string;
  owner_id: string;
  all_tasks: boolean;
  url: string;
  event_types: string[];
  description: string;
  enabled: boolean;
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
};

function toWebhook(row: WebhookRow): Webhook {
  return {
    id: row.id,
    ownerId: row.owner_id,
    allTasks: row.all_tasks,
    url: row.url,
    eventTypes: row.event_types as EventType[],
    description: row.description,
    enabled: row.enabled,
    failingSince: row.failing_since,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
