import { type Selectable, sql } from 'kysely';
import { lockWorkspace } from './builds.ts';
import type { Db } from './connection.ts';
import type { TaskMessages } from './schema.ts';
import { taskStatusSql } from './status-sql.ts';

export type InboxMessageStatus = 'queued' | 'delivered' | 'cancelled';

/** A message of a task's inbox, as the service shows it. */
export type InboxMessage = {
  id: string;
  taskId: string;
  status: InboxMessageStatus;
  content: string;
  senderId: string | null;
  queuedAt: Date;
  deliveredAt: Date | null;
  cancelledAt: Date | null;
  /** Times the agent was asked to take it. */
  attempts: number;
  /** Why the last attempt failed, or null. */
  lastError: string | null;
};

function toMessage(row: Omit<Selectable<TaskMessages>, 'leased_until' | 'position'>): InboxMessage {
  return {
    id: row.id,
    taskId: row.task_id,
    status: row.status as InboxMessageStatus,
    content: row.content,
    senderId: row.sender_id,
    queuedAt: row.created_at,
    deliveredAt: row.delivered_at,
    cancelledAt: row.cancelled_at,
    attempts: row.attempts,
    lastError: row.last_error,
  };
}

/**
 * Serializes everything that picks or changes a task's inbox head (claim, cancel) for the rest of
 * the transaction, across server processes: one delivery of a task at a time, in order.
 */
async function lockInbox(trx: Db, taskId: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext('hiatus.inbox'), hashtext(${taskId}))`.execute(trx);
}

/**
 * Stores a message at the end of the task's inbox. Call it holding the task's workspace lock, so
 * positions follow commit order per task.
 */
export async function insertQueuedMessage(
  trx: Db,
  message: { taskId: string; content: string; senderId: string | null },
): Promise<InboxMessage> {
  const row = await trx
    .insertInto('task_messages')
    .values({ task_id: message.taskId, content: message.content, sender_id: message.senderId })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toMessage(row);
}

/** Whether the task has queued messages (a direct send waits its turn behind them). */
async function hasQueuedMessages(db: Db, taskId: string): Promise<boolean> {
  const row = await db
    .selectFrom('task_messages')
    .where('task_id', '=', taskId)
    .where('status', '=', 'queued')
    .select('id')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** How many messages wait in the task's inbox. */
export async function countQueuedMessages(db: Db, taskId: string): Promise<number> {
  const row = await db
    .selectFrom('task_messages')
    .where('task_id', '=', taskId)
    .where('status', '=', 'queued')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/** A queued message as a list shows it: the start of its content, and its whole size. */
export type QueuedPreview = Omit<InboxMessage, 'content'> & { preview: string; bytes: number };

/**
 * The task's queued messages, oldest first, at most `limit`, each with only its first
 * `previewChars` characters (cut in the database, so a full inbox of large messages is never
 * read whole), and how many are queued in all.
 */
export async function listQueuedPreviews(
  db: Db,
  taskId: string,
  options: { limit: number; previewChars: number },
): Promise<{ items: QueuedPreview[]; total: number }> {
  const rows = await db
    .selectFrom('task_messages')
    .where('task_id', '=', taskId)
    .where('status', '=', 'queued')
    .orderBy('position')
    .limit(options.limit)
    .select([
      'id',
      'task_id',
      'status',
      'sender_id',
      'created_at',
      'delivered_at',
      'cancelled_at',
      'attempts',
      'last_error',
    ])
    // The content is read only as far as the preview goes.
    .select([
      sql<string>`left(content, ${options.previewChars})`.as('content'),
      sql<number>`octet_length(content)`.as('bytes'),
      sql<string>`count(*) OVER ()`.as('total'),
    ])
    .execute();
  const items = rows.map((row) => {
    const { content, ...message } = toMessage(row);
    return { ...message, preview: content, bytes: Number(row.bytes) };
  });
  return { items, total: Number(rows[0]?.total ?? 0) };
}

/** One message of the task, whatever its status, with its whole content; undefined when it has none such. */
export async function findMessage(db: Db, taskId: string, messageId: string): Promise<InboxMessage | undefined> {
  const row = await db
    .selectFrom('task_messages')
    .where('id', '=', messageId)
    .where('task_id', '=', taskId)
    .selectAll()
    .executeTakeFirst();
  return row && toMessage(row);
}

/**
 * Active tasks with a queued message that no process is delivering now, at most `limit`: what a
 * delivery pass looks at.
 */
export async function tasksWithDeliverableMessages(db: Db, limit: number): Promise<string[]> {
  const status = taskStatusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
  const { rows } = await sql<{ task_id: string }>`
    SELECT t.id AS task_id
    FROM tasks t
    LEFT JOIN LATERAL (
      SELECT transition, job_status FROM workspace_builds
      WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
    ) b ON true
    WHERE t.id IN (
      SELECT task_id FROM task_messages
      WHERE status = 'queued' AND (leased_until IS NULL OR leased_until <= NOW())
    )
    AND ${status} = 'active' AND (t.pause_hold_until IS NULL OR t.pause_hold_until <= NOW())
    LIMIT ${limit}`.execute(db);
  return rows.map((r) => r.task_id);
}

/**
 * Whether a message may start to go to the task now: it is active and no pause holds it. Read
 * under the inbox lock, which a pause takes to set its hold, so a delivery either started before
 * the hold (and the pause waits for it) or sees it.
 */
async function mayDeliver(trx: Db, taskId: string): Promise<boolean> {
  const status = taskStatusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
  const { rows } = await sql<{ id: string }>`
    SELECT t.id FROM tasks t
    LEFT JOIN LATERAL (
      SELECT transition, job_status FROM workspace_builds
      WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
    ) b ON true
    WHERE t.id = ${taskId} AND (t.pause_hold_until IS NULL OR t.pause_hold_until <= NOW()) AND ${status} = 'active'`.execute(
    trx,
  );
  return rows.length > 0;
}

/** A message a process holds for delivery until `leased_until`. */
export type ClaimedMessage = InboxMessage & { leasedUntil: Date };

/**
 * Stores a message sent straight to the task's agent as its inbox head, already held for delivery
 * for `leaseMs`, when it may go now: the task is active, no pause holds it, nothing is queued
 * before it. Undefined, storing nothing, when it may not. The caller marks it delivered or drops it.
 */
export async function claimDirectDelivery(
  db: Db,
  message: { taskId: string; workspaceId: string; content: string; senderId: string | null; leaseMs: number },
): Promise<ClaimedMessage | undefined> {
  return db.transaction().execute(async (trx) => {
    // The workspace lock first, as every change of the task takes it: positions follow commit order.
    await lockWorkspace(trx, message.workspaceId);
    await lockInbox(trx, message.taskId);
    if (!(await mayDeliver(trx, message.taskId)) || (await hasQueuedMessages(trx, message.taskId))) return undefined;
    const row = await trx
      .insertInto('task_messages')
      .values({
        task_id: message.taskId,
        content: message.content,
        sender_id: message.senderId,
        leased_until: sql`NOW() + make_interval(secs => ${message.leaseMs / 1000})`,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { ...toMessage(row), leasedUntil: row.leased_until! };
  });
}

/** Removes a direct delivery the agent did not take: the send failed, or goes to the inbox instead. */
export async function dropDirectDelivery(db: Db, messageId: string): Promise<void> {
  await db.deleteFrom('task_messages').where('id', '=', messageId).where('status', '=', 'queued').execute();
}

/**
 * Holds the task for a pause under way until `hold.ms` from now, under the inbox lock: from its
 * commit on, no delivery to the task starts. False when another pause holds it (a hold that ran
 * out, or the one named `replacing`, which its pause gave up, does not count).
 */
export async function holdForPause(
  trx: Db,
  taskId: string,
  hold: { id: string; ms: number; replacing?: string },
): Promise<boolean> {
  await lockInbox(trx, taskId);
  const held = await trx
    .updateTable('tasks')
    .set({ pause_hold_id: hold.id, pause_hold_until: sql`NOW() + make_interval(secs => ${hold.ms / 1000})` })
    .where('id', '=', taskId)
    .where((eb) =>
      eb.or([
        eb('pause_hold_until', 'is', null),
        eb('pause_hold_until', '<=', sql<Date>`NOW()`),
        ...(hold.replacing ? [eb('pause_hold_id', '=', hold.replacing)] : []),
      ]),
    )
    .returning('id')
    .executeTakeFirst();
  return held !== undefined;
}

/** Ends the pause hold `holdId` of the task; false when it is not (or no longer) in force. */
export async function endPauseHold(db: Db, taskId: string, holdId: string): Promise<boolean> {
  const ended = await db
    .updateTable('tasks')
    .set({ pause_hold_id: null, pause_hold_until: null })
    .where('id', '=', taskId)
    .where('pause_hold_id', '=', holdId)
    .where('pause_hold_until', '>', sql<Date>`NOW()`)
    .returning('id')
    .executeTakeFirst();
  return ended !== undefined;
}

/** Lets go of the pause hold `holdId`, in force or not (a pause that gave up). */
export async function releasePauseHold(db: Db, taskId: string, holdId: string): Promise<void> {
  await db
    .updateTable('tasks')
    .set({ pause_hold_id: null, pause_hold_until: null })
    .where('id', '=', taskId)
    .where('pause_hold_id', '=', holdId)
    .execute();
}

/** Whether a process is delivering a message to the task now (holds one whose lease runs). */
export async function hasDeliveryInFlight(db: Db, taskId: string): Promise<boolean> {
  const row = await db
    .selectFrom('task_messages')
    .where('task_id', '=', taskId)
    .where('status', '=', 'queued')
    .where('leased_until', '>', sql<Date>`NOW()`)
    .select('id')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Takes the oldest queued message of the task for delivery, for `leaseMs`: none while another
 * process holds it (its lease has not run out), so a later message never goes before it.
 */
export async function claimNextMessage(db: Db, taskId: string, leaseMs: number): Promise<ClaimedMessage | undefined> {
  return db.transaction().execute(async (trx) => {
    await lockInbox(trx, taskId);
    if (!(await mayDeliver(trx, taskId))) return undefined;
    const head = await trx
      .selectFrom('task_messages')
      .where('task_id', '=', taskId)
      .where('status', '=', 'queued')
      .orderBy('position')
      .limit(1)
      .select(['id', sql<boolean>`leased_until IS NULL OR leased_until <= NOW()`.as('free')])
      .executeTakeFirst();
    if (!head?.free) return undefined;
    const row = await trx
      .updateTable('task_messages')
      .set({ leased_until: sql`NOW() + make_interval(secs => ${leaseMs / 1000})` })
      .where('id', '=', head.id)
      .where('status', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    return row && { ...toMessage(row), leasedUntil: row.leased_until! };
  });
}

/**
 * Gives a claimed message back, still queued, for a later try; `error` (with `attempted`: the
 * agent was asked to take it) says why it did not go.
 */
export async function releaseMessage(
  db: Db,
  messageId: string,
  outcome: { attempted: boolean; error: string | null },
): Promise<void> {
  await db
    .updateTable('task_messages')
    .set({
      leased_until: null,
      last_error: outcome.error?.slice(0, 500) ?? null,
      ...(outcome.attempted ? { attempts: sql`attempts + 1` } : {}),
    })
    .where('id', '=', messageId)
    .where('status', '=', 'queued')
    .execute();
}

/** The agent took the message: the delivered marker, written before the task's next message may go. */
export async function markMessageDelivered(trx: Db, messageId: string): Promise<InboxMessage | undefined> {
  const row = await trx
    .updateTable('task_messages')
    .set({
      status: 'delivered',
      delivered_at: sql`NOW()`,
      leased_until: null,
      last_error: null,
      attempts: sql`attempts + 1`,
    })
    .where('id', '=', messageId)
    .where('status', '=', 'queued')
    .returningAll()
    .executeTakeFirst();
  return row && toMessage(row);
}

/**
 * Cancels a queued message of the task that no process is delivering now, under the inbox's
 * lock. Answers the message as it was when that is not possible (delivered, cancelled, being
 * delivered), or undefined when the task has no such message.
 */
export async function cancelQueuedMessage(
  trx: Db,
  taskId: string,
  messageId: string,
): Promise<{ cancelled: InboxMessage } | { refused: InboxMessage; inFlight: boolean } | undefined> {
  await lockInbox(trx, taskId);
  const current = await trx
    .selectFrom('task_messages')
    .where('id', '=', messageId)
    .where('task_id', '=', taskId)
    .selectAll()
    .select(sql<boolean>`leased_until IS NOT NULL AND leased_until > NOW()`.as('in_flight'))
    .executeTakeFirst();
  if (!current) return undefined;
  if (current.status !== 'queued' || current.in_flight) {
    return { refused: toMessage(current), inFlight: current.in_flight };
  }
  const row = await trx
    .updateTable('task_messages')
    .set({ status: 'cancelled', cancelled_at: sql`NOW()`, leased_until: null })
    .where('id', '=', messageId)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { cancelled: toMessage(row) };
}
