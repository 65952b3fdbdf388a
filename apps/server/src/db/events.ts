import { sql } from 'kysely';
import type { EventType, HiatusEvent, NewEvent } from '../domain/events.ts';
import type { Db } from './connection.ts';

/** The channel committed changes are announced on, to every process listening (see db/notifications.ts). */
export const changesChannel = 'hiatus_changes';

/**
 * Records events in the change's own transaction, fans them out to the webhooks that want them,
 * and announces them to listeners once committed (NOTIFY is delivered at commit, never before).
 *
 * Ids are taken under a transaction-scoped lock held until commit, so they follow commit order:
 * a reader that has seen event n has seen every earlier one, and "after n" never skips an event
 * that committed late. The lock is taken last in the change, so it is held only for its tail.
 */
export async function insertEvents(trx: Db, events: readonly NewEvent[]): Promise<HiatusEvent[]> {
  if (events.length === 0) return [];
  await lockEvents(trx);
  const rows = await trx
    .insertInto('task_events')
    .values(
      events.map((e) => ({
        type: e.type,
        task_id: e.taskId,
        owner_id: e.ownerId,
        payload: JSON.stringify(e.payload),
      })),
    )
    .returningAll()
    .execute();
  const ids = rows.map((r) => r.id);
  // Every endpoint that wants the event gets a delivery, in this same transaction: none is lost.
  await sql`
    INSERT INTO webhook_deliveries (webhook_id, event_id, task_id)
    SELECT w.id, e.id, e.task_id
    FROM task_events e
    JOIN webhooks w ON w.enabled
      AND (w.all_tasks OR w.owner_id = e.owner_id)
      AND (cardinality(w.event_types) = 0 OR e.type = ANY (w.event_types))
    WHERE e.id = ANY (${ids}::bigint[]) AND e.type <> 'webhook.test'`.execute(trx);
  const taskIds = new Set(events.map((e) => e.taskId));
  const [taskId] = taskIds;
  await announceChange(trx, { eventId: ids[ids.length - 1], ...(taskIds.size === 1 && taskId ? { taskId } : {}) });
  return rows.map(toEvent);
}

/**
 * The lock event ids are taken under, held until the transaction ends; a check-then-record (one
 * warning per idle period) takes it first, so two processes cannot both record.
 */
export async function lockEvents(trx: Db): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext('hiatus.events'))`.execute(trx);
}

/**
 * A change listeners should look at: events up to `eventId`, of `taskId` when they all belong to
 * one task; or builds of `workspaceId`. An empty notice means anything may have changed.
 */
export type ChangeNotice = {
  eventId?: string;
  taskId?: string;
  workspaceId?: string;
  /** Keys just revoked: every process stops accepting them at once (a notice about keys only). */
  revokedKeyIds?: string[];
};

/** NOTIFY the change, delivered to every listening process when (and only if) the transaction commits. */
export async function announceChange(trx: Db, notice: ChangeNotice): Promise<void> {
  await sql`SELECT pg_notify(${changesChannel}, ${JSON.stringify(notice)})`.execute(trx);
}

export type EventFilter = {
  /** Events after this id (exclusive). */
  after?: string;
  taskId?: string;
  /** Only this owner's tasks' events; undefined for all. */
  ownerId?: string;
  types?: readonly EventType[];
  limit: number;
};

/** Events in id (commit) order. */
export async function listEvents(db: Db, filter: EventFilter): Promise<HiatusEvent[]> {
  let query = db.selectFrom('task_events').selectAll().orderBy('id').limit(filter.limit);
  if (filter.after !== undefined) query = query.where('id', '>', filter.after);
  if (filter.taskId !== undefined) query = query.where('task_id', '=', filter.taskId);
  if (filter.ownerId !== undefined) query = query.where('owner_id', '=', filter.ownerId);
  if (filter.types?.length) query = query.where('type', 'in', [...filter.types]);
  return (await query.execute()).map(toEvent);
}

/** The newest event's id, or '0': where a watcher that wants only what comes next starts. */
export async function lastEventId(db: Db): Promise<string> {
  const row = await db
    .selectFrom('task_events')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirst();
  return row?.id == null ? '0' : String(row.id);
}

/** The task's latest event of `type`, if any. */
export async function findLatestEvent(db: Db, taskId: string, type: EventType): Promise<HiatusEvent | undefined> {
  const row = await db
    .selectFrom('task_events')
    .selectAll()
    .where('task_id', '=', taskId)
    .where('type', '=', type)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row && toEvent(row);
}

/** Whether the task was warned of its auto-pause since its idle clock last started. */
export async function warnedSinceIdle(db: Db, taskId: string): Promise<boolean> {
  const row = await db
    .selectFrom('task_events as e')
    .innerJoin('tasks as t', 't.id', 'e.task_id')
    .select('e.id')
    .where('e.task_id', '=', taskId)
    .where('e.type', '=', 'task.auto_pause_warning')
    .whereRef('e.occurred_at', '>=', 't.agent_idle_since')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Removes events older than `before` that no delivery still waits for; returns how many. */
export async function deleteEventsBefore(db: Db, before: Date, batchSize: number): Promise<number> {
  const result = await sql`
    DELETE FROM task_events WHERE id IN (
      SELECT e.id FROM task_events e
      WHERE e.occurred_at < ${before}
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
      LIMIT ${batchSize})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

type EventRow = {
  id: string;
  type: string;
  task_id: string | null;
  owner_id: string;
  payload: unknown;
  occurred_at: Date;
};

function toEvent(row: EventRow): HiatusEvent {
  return {
    id: String(row.id),
    type: row.type,
    taskId: row.task_id,
    ownerId: row.owner_id,
    occurredAt: row.occurred_at,
    payload: row.payload,
  } as HiatusEvent;
}
