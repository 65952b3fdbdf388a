import { sql } from 'kysely';
import type { AgentMessage } from '../agentapi/schema.ts';
import { defaults } from '../defaults.ts';
import type { Db } from './connection.ts';
import {
  type AgentLifetime,
  boundTaskHistory,
  lockLatestSnapshot,
  placeSnapshot,
  writeSnapshotPlacement,
} from './history.ts';
import type { SnapshotSource } from './schema.ts';

export type SnapshotMeta = {
  taskId: string;
  format: string | null;
  createdAt: Date;
  messageCount: number;
  bytes: number;
  firstMessageId: number | null;
  source: SnapshotSource | null;
  /** Where it sits in the task's history (db/history.ts). */
  placement: {
    segment: number;
    firstPosition: number;
    /** Leading messages repeating the previous agent lifetime's conversation: not in the log. */
    overlap: number;
    conversationHash: string | null;
    /** The whole history shown up to its end, as the matching rule compares it. */
    history: { length: number; hash: string | null };
    /** Bytes of its messages after the overlap, as JSON: what the history's bound counts. */
    keptBytes: number;
    /** Its agent lifetime; null when unknown (a snapshot written before lifetimes were recorded). */
    lifetime: AgentLifetime | null;
  };
};

export type StoredSnapshot = { createdAt: Date; messageCount: number; bytes: number };

/**
 * Writes a task's snapshot and its stats. With `onlyIfNotOlderThanStored`, an existing snapshot
 * taken later than `takenAt` is kept, and null is returned.
 *
 * The snapshot it replaces is not lost when it was of an earlier agent lifetime (another start of
 * the workspace, or another agent URL): it is kept first, in the same transaction, as a segment of
 * the task's history (db/history.ts), and the history is then held to `maxHistoryBytes` (the oldest
 * segments dropped, each with a `task.history_dropped` event). A second snapshot of the same agent
 * lifetime replaces the first.
 */
export async function upsertSnapshot(
  trx: Db,
  input: {
    taskId: string;
    messages: AgentMessage[];
    source: SnapshotSource;
    takenAt?: Date;
    onlyIfNotOlderThanStored?: boolean;
    /** The task history's bound (HIATUS_MAX_HISTORY_BYTES); the default's when not given. */
    maxHistoryBytes?: number;
  },
): Promise<StoredSnapshot | null> {
  // Each message serialized once: for the envelope and for its page. The stored envelope names its
  // format, which can evolve while old snapshots stay readable or clearly refused.
  const parts = input.messages.map((message) => JSON.stringify(message));
  const json = `{"format":"agentapi","data":{"messages":[${parts.join(',')}]}}`;
  // The previous snapshot is locked first: writers of one task's history queue here.
  const latest = await lockLatestSnapshot(trx, input.taskId);
  if (input.onlyIfNotOlderThanStored && latest && input.takenAt && latest.createdAt > input.takenAt) return null;
  const placement = await placeSnapshot(trx, input.taskId, latest, input.messages, parts);
  const takenAt = input.takenAt ? sql`${input.takenAt}::timestamptz` : sql`NOW()`;
  const guard = input.onlyIfNotOlderThanStored
    ? sql`WHERE task_snapshots.log_snapshot_created_at <= excluded.log_snapshot_created_at`
    : sql``;
  const written = await sql<{ created_at: Date }>`
    INSERT INTO task_snapshots (task_id, log_snapshot, log_snapshot_created_at)
    VALUES (${input.taskId}, ${json}::jsonb, ${takenAt})
    ON CONFLICT (task_id) DO UPDATE
      SET log_snapshot = excluded.log_snapshot, log_snapshot_created_at = excluded.log_snapshot_created_at
      ${guard}
    RETURNING log_snapshot_created_at AS created_at`.execute(trx);
  const row = written.rows[0];
  if (!row) return null;
  const stats = {
    message_count: input.messages.length,
    byte_size: Buffer.byteLength(json),
    first_message_id: input.messages[0]?.id ?? null,
    source: input.source,
  };
  await trx
    .insertInto('task_snapshot_stats')
    .values({ task_id: input.taskId, ...stats })
    .onConflict((oc) => oc.column('task_id').doUpdateSet(stats))
    .execute();
  await writeSnapshotPages(trx, input.taskId, parts);
  await writeSnapshotPlacement(trx, input.taskId, placement);
  await boundTaskHistory(trx, input.taskId, placement.keptBytes, input.maxHistoryBytes ?? defaults.maxHistoryBytes);
  return { createdAt: row.created_at, messageCount: stats.message_count, bytes: stats.byte_size };
}

/** What is known of a task's snapshot without reading its messages; undefined when it has none. */
export async function findSnapshotMeta(db: Db, taskId: string): Promise<SnapshotMeta | undefined> {
  const row = await db
    .selectFrom('task_snapshots as s')
    .leftJoin('task_snapshot_stats as st', 'st.task_id', 's.task_id')
    .leftJoin('task_snapshot_segments as m', 'm.task_id', 's.task_id')
    .where('s.task_id', '=', taskId)
    .select([
      's.task_id',
      's.log_snapshot_created_at',
      'st.message_count',
      'st.byte_size',
      'st.first_message_id',
      'st.source',
      'm.task_id as placed',
      'm.segment',
      'm.first_position',
      'm.overlap',
      'm.conversation_hash',
      'm.history_length',
      'm.history_hash',
      'm.kept_bytes',
      'm.start_build_id',
      'm.agent_url',
      'm.started_at',
    ])
    // Snapshots written without stats (by hand, or an older service) are measured here.
    .select(
      sql<{ format: string | null; count: number; bytes: number; first: number | null } | null>`
        CASE WHEN st.task_id IS NULL THEN jsonb_build_object(
          'format', s.log_snapshot->>'format',
          'count', COALESCE(jsonb_array_length(s.log_snapshot->'data'->'messages'), 0),
          'bytes', octet_length(s.log_snapshot::text),
          'first', s.log_snapshot->'data'->'messages'->0->'id') END`.as('measured'),
    )
    .executeTakeFirst();
  if (!row) return undefined;
  const measured = row.measured;
  const firstMessageId = measured ? measured.first : row.first_message_id;
  return {
    taskId: row.task_id,
    // Stats are only written for snapshots the service wrote itself, always in its own format.
    format: measured ? measured.format : 'agentapi',
    createdAt: row.log_snapshot_created_at,
    messageCount: measured ? measured.count : row.message_count!,
    bytes: measured ? measured.bytes : Number(row.byte_size),
    firstMessageId,
    source: row.source,
    placement: {
      segment: row.segment ?? 1,
      firstPosition: row.first_position === null ? (firstMessageId ?? 0) : Number(row.first_position),
      overlap: row.overlap ?? 0,
      conversationHash: row.conversation_hash,
      history: {
        length: row.history_length ?? (measured ? measured.count : row.message_count!),
        hash: row.history_hash,
      },
      keptBytes: row.kept_bytes === null ? (measured ? measured.bytes : Number(row.byte_size)) : Number(row.kept_bytes),
      lifetime: row.placed
        ? { startBuildId: row.start_build_id, agentUrl: row.agent_url, startedAt: row.started_at }
        : null,
    },
  };
}

/** A stored page holds messages up to about this many bytes (one larger message alone). */
const pageBytes = 64 * 1024;
/** Rows per INSERT of pages: a 32 MiB snapshot is some 500 pages. */
const pagesPerStatement = 200;

/**
 * Replaces a snapshot's pages (its messages, serialized, cut into pages of about `pageBytes`):
 * what makes a log page's cost independent of the snapshot's size.
 */
async function writeSnapshotPages(trx: Db, taskId: string, parts: readonly string[]): Promise<void> {
  await trx.deleteFrom('task_snapshot_pages').where('task_id', '=', taskId).execute();
  const pages: Array<{ task_id: string; first_position: number; message_count: number; messages: string }> = [];
  let first = 0;
  let bytes = 0;
  for (let i = 0; i < parts.length; i++) {
    bytes += parts[i]!.length;
    const last = i === parts.length - 1;
    if (bytes >= pageBytes || last) {
      pages.push({
        task_id: taskId,
        first_position: first,
        message_count: i - first + 1,
        messages: `[${parts.slice(first, i + 1).join(',')}]`,
      });
      first = i + 1;
      bytes = 0;
    }
  }
  for (let i = 0; i < pages.length; i += pagesPerStatement) {
    await trx
      .insertInto('task_snapshot_pages')
      .values(pages.slice(i, i + pagesPerStatement))
      .execute();
  }
}

/**
 * Messages at positions `from` to `to` (inclusive) of a snapshot: from the one or few stored
 * pages that hold them (the page holding `from`, and the following ones up to `to`).
 */
export async function snapshotMessageRange(db: Db, taskId: string, from: number, to: number): Promise<unknown[]> {
  const result = await sql<{ first_position: number; messages: unknown[] }>`
    SELECT first_position, messages FROM task_snapshot_pages
    WHERE task_id = ${taskId} AND first_position <= ${to}
      AND first_position >= (SELECT max(first_position) FROM task_snapshot_pages
                             WHERE task_id = ${taskId} AND first_position <= ${from})
    ORDER BY first_position`.execute(db);
  const start = result.rows[0]?.first_position ?? from;
  return result.rows.flatMap((row) => row.messages).slice(from - start, to - start + 1);
}

/** The whole stored document, for a caller who asked for all of it. */
export async function findSnapshotDocument(
  db: Db,
  taskId: string,
): Promise<{ document: unknown; createdAt: Date } | undefined> {
  const row = await db
    .selectFrom('task_snapshots')
    .where('task_id', '=', taskId)
    .select(['log_snapshot', 'log_snapshot_created_at'])
    .executeTakeFirst();
  return row && { document: row.log_snapshot, createdAt: row.log_snapshot_created_at };
}

/** Deletes a task's snapshot (its stats go by the cascade); true when there was one. */
export async function deleteSnapshot(trx: Db, taskId: string): Promise<boolean> {
  const result = await trx.deleteFrom('task_snapshots').where('task_id', '=', taskId).executeTakeFirst();
  return result.numDeletedRows > 0n;
}
