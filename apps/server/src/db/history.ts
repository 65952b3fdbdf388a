import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { AgentMessage } from '../agentapi/schema.ts';
import type { Db } from './connection.ts';
import { insertEvents } from './events.ts';
import type { SnapshotSource } from './schema.ts';

/*
 * A task's history across pauses: its segments, one per agent lifetime, oldest first. The latest
 * snapshot (task_snapshots, as the seed defines it) is the last segment; the earlier ones are kept
 * in task_history_segments and their messages in task_history_pages.
 *
 * Positions number the messages of the whole history and never change. The task's first segment
 * starts at the id of its first message (so a task that never resumed has positions equal to its
 * agent's message ids); each later segment starts where the one before it ended. A dropped segment
 * leaves a gap at the start of the history, never a renumbering.
 *
 * The matching rule (an agent that keeps its own history must not show it twice): a snapshot's
 * leading messages are not part of its segment when they are, by role and content, exactly
 *   - the whole conversation of the previous agent lifetime, as its snapshot held it (an agent that
 *     kept its own conversation: `conversation_hash`), or
 *   - the whole history shown before the segment, every segment's shown messages oldest first (an
 *     agent handed the task's history, `readTaskHistory`, that replays it: `history_hash`),
 * whichever is longer. Both are SHA-256 over the role and content of each message (the history's a
 * chain, one link a message, so it extends from the stored digest), so matching costs one pass over
 * the new snapshot and no read of the kept history. Anything else (a fresh agent, a partial
 * replay, an edited message, a history some of which the bound dropped) is kept whole.
 */

/** An agent lifetime: the start build that produced the agent and the URL it answers at. */
export type AgentLifetime = { startBuildId: string | null; agentUrl: string | null; startedAt: Date | null };

/** A run of messages as the matching rule compares it: how many, and their hash (null: unknown). */
export type ConversationPrint = { length: number; hash: string | null };

/** Where the latest snapshot sits in the task's history. */
export type SnapshotPlacement = {
  segment: number;
  firstPosition: number;
  /** Leading messages of the snapshot that repeat the previous lifetime's conversation: not in the log. */
  overlap: number;
  /** Bytes of the messages after the overlap, as JSON: what the history's bound counts. */
  keptBytes: number;
  conversationHash: string | null;
  /** The whole history shown up to this segment's end. */
  history: ConversationPrint;
  lifetime: AgentLifetime;
};

/** A kept segment (an earlier agent lifetime) of a task's history. */
export type KeptSegment = {
  segment: number;
  firstPosition: number;
  messageCount: number;
  overlap: number;
  bytes: number;
  conversation: ConversationPrint;
  history: ConversationPrint;
  startBuildId: string | null;
  agentUrl: string | null;
  startedAt: Date | null;
  pausedAt: Date;
  source: SnapshotSource;
};

/** One message's part in a conversation's hash: role and content, unambiguously. */
function hashEntry(message: Pick<AgentMessage, 'role' | 'content'>): string {
  return `${JSON.stringify([message.role, message.content])}\n`;
}

/**
 * The conversation's hash, and the hash of its first `prefixLength` messages when it has that
 * many (one pass for both).
 */
function hashConversation(
  messages: readonly Pick<AgentMessage, 'role' | 'content'>[],
  prefixLength = -1,
): { hash: string; prefix: string | null } {
  const hash = createHash('sha256');
  let prefix: string | null = null;
  for (let i = 0; i <= messages.length; i++) {
    if (i === prefixLength) prefix = hash.copy().digest('hex');
    if (i < messages.length) hash.update(hashEntry(messages[i]!));
  }
  return { hash: hash.digest('hex'), prefix };
}

/** The history's hash chain extended with `messages` from `from` on: one link a message. */
function chainHistory(
  start: string | null,
  messages: readonly Pick<AgentMessage, 'role' | 'content'>[],
  from = 0,
  to = messages.length,
): string {
  let link = start ?? '';
  for (let i = from; i < to; i++) {
    link = createHash('sha256').update(link).update(hashEntry(messages[i]!)).digest('hex');
  }
  return link;
}

/** Whether `print` can be looked for at the start of `messages`. */
const comparable = (
  print: ConversationPrint | null,
  messages: readonly unknown[],
): print is ConversationPrint & { hash: string } =>
  print?.hash != null && print.length > 0 && print.length <= messages.length;

/**
 * The matching rule: how many leading messages of `messages` repeat, by role and content, either
 * the previous lifetime's whole conversation (`conversation`) or the whole history shown before
 * (`history`); 0 unless all of one is repeated. With the conversation's own hash, and the history's
 * chain continued with what is not repeated.
 */
function matchOverlap(
  messages: readonly Pick<AgentMessage, 'role' | 'content'>[],
  previous: { conversation: ConversationPrint | null; history: ConversationPrint | null },
): { overlap: number; hash: string; history: ConversationPrint } {
  const { conversation, history } = previous;
  const { hash, prefix } = hashConversation(messages, comparable(conversation, messages) ? conversation.length : -1);
  let overlap = prefix !== null && prefix === conversation?.hash ? conversation.length : 0;
  if (
    comparable(history, messages) &&
    history.length > overlap &&
    chainHistory(null, messages, 0, history.length) === history.hash
  ) {
    overlap = history.length;
  }
  // A history whose start is unknown (a snapshot from before the chain) is not chained on.
  const before = history ?? { length: 0, hash: null };
  const chained =
    before.hash !== null || before.length === 0
      ? { length: before.length + messages.length - overlap, hash: chainHistory(before.hash, messages, overlap) }
      : { length: before.length + messages.length - overlap, hash: null };
  return { overlap, hash, history: chained };
}

/** The task's current agent lifetime: its latest successful start build, and its agent URL. */
async function findAgentLifetime(db: Db, taskId: string): Promise<AgentLifetime> {
  const result = await sql<{ agent_url: string | null; build_id: string | null; completed_at: Date | null }>`
    SELECT t.agent_url, b.id AS build_id, b.completed_at
    FROM tasks t
    LEFT JOIN LATERAL (
      SELECT id, completed_at FROM workspace_builds
      WHERE workspace_id = t.workspace_id AND transition = 'start' AND job_status = 'succeeded'
      ORDER BY build_number DESC LIMIT 1
    ) b ON true
    WHERE t.id = ${taskId}`.execute(db);
  const row = result.rows[0];
  return {
    startBuildId: row?.build_id ?? null,
    agentUrl: row?.agent_url ?? null,
    startedAt: row?.completed_at ?? null,
  };
}

/**
 * Whether a snapshot of lifetime `stored` (taken at `takenAt`) is of the agent of lifetime
 * `current`. A snapshot of unknown lifetime (written before lifetimes were recorded, or by hand)
 * is the current agent's when taken after it started.
 */
export function sameLifetime(stored: AgentLifetime | null, current: AgentLifetime, takenAt: Date): boolean {
  if (!stored?.startBuildId) return current.startedAt === null || takenAt >= current.startedAt;
  if (stored.startBuildId !== current.startBuildId) return false;
  return stored.agentUrl === null || stored.agentUrl === current.agentUrl;
}

/** The latest snapshot as the history needs it, locked for the rest of the transaction. */
export type LockedSnapshot = Omit<SnapshotPlacement, 'lifetime'> & {
  createdAt: Date;
  source: SnapshotSource;
  conversationLength: number;
  firstMessageId: number | null;
  lifetime: AgentLifetime | null;
};

/**
 * Locks the task's latest snapshot row (so two writers of one task's history queue here) and reads
 * where it sits; undefined when the task has none. Snapshots written without stats or placement
 * (by hand, or before either existed) are measured here: the task's first segment.
 */
export async function lockLatestSnapshot(trx: Db, taskId: string): Promise<LockedSnapshot | undefined> {
  const result = await sql<{
    created_at: Date;
    source: SnapshotSource | null;
    length: number;
    first_id: number | null;
    segment: number | null;
    first_position: string | null;
    overlap: number | null;
    kept_bytes: string;
    conversation_hash: string | null;
    history_length: number | null;
    history_hash: string | null;
    start_build_id: string | null;
    agent_url: string | null;
    started_at: Date | null;
    placed: boolean;
  }>`
    SELECT s.log_snapshot_created_at AS created_at, st.source,
           COALESCE(st.message_count, CASE WHEN jsonb_typeof(s.log_snapshot->'data'->'messages') = 'array'
             THEN jsonb_array_length(s.log_snapshot->'data'->'messages') ELSE 0 END) AS length,
           CASE WHEN st.task_id IS NULL THEN (s.log_snapshot->'data'->'messages'->0->>'id')::int
             ELSE st.first_message_id END AS first_id,
           m.segment, m.first_position, m.overlap,
           COALESCE(m.kept_bytes, st.byte_size, octet_length(s.log_snapshot::text)) AS kept_bytes,
           m.conversation_hash, m.history_length, m.history_hash, m.start_build_id, m.agent_url, m.started_at, m.task_id IS NOT NULL AS placed
    FROM task_snapshots s
    LEFT JOIN task_snapshot_stats st ON st.task_id = s.task_id
    LEFT JOIN task_snapshot_segments m ON m.task_id = s.task_id
    WHERE s.task_id = ${taskId}
    FOR UPDATE OF s`.execute(trx);
  const row = result.rows[0];
  if (!row) return undefined;
  return {
    createdAt: row.created_at,
    source: row.source ?? 'pause',
    conversationLength: row.length,
    firstMessageId: row.first_id,
    segment: row.segment ?? 1,
    firstPosition: row.first_position === null ? (row.first_id ?? 0) : Number(row.first_position),
    overlap: row.overlap ?? 0,
    keptBytes: Number(row.kept_bytes),
    conversationHash: row.conversation_hash,
    history: { length: row.history_length ?? row.length, hash: row.history_hash },
    lifetime: row.placed
      ? { startBuildId: row.start_build_id, agentUrl: row.agent_url, startedAt: row.started_at }
      : null,
  };
}

/** What placing a conversation needs to know of the latest snapshot. */
type LatestPlace = Pick<
  LockedSnapshot,
  'segment' | 'firstPosition' | 'conversationLength' | 'overlap' | 'conversationHash' | 'history'
>;

/**
 * Where an agent lifetime's conversation (`messages`) sits in the task's history, given the latest
 * snapshot (`sameAsLatest`: of this very lifetime, which the conversation then replaces) and the
 * last kept segment: its segment, its first position, and the leading messages it repeats of the
 * previous lifetime's conversation (the matching rule). Pure: the snapshot's writer and the live
 * log place alike.
 */
export function placeConversation(
  latest: LatestPlace | undefined,
  sameAsLatest: boolean,
  last: KeptSegment | undefined,
  messages: readonly Pick<AgentMessage, 'id' | 'role' | 'content'>[],
): { segment: number; firstPosition: number; overlap: number; hash: string; history: ConversationPrint } {
  let segment: number;
  let firstPosition: number | null;
  let previous: { conversation: ConversationPrint | null; history: ConversationPrint | null };
  if (latest && !sameAsLatest) {
    segment = latest.segment + 1;
    firstPosition = latest.firstPosition + latest.conversationLength - latest.overlap;
    previous = {
      conversation: { length: latest.conversationLength, hash: latest.conversationHash },
      history: latest.history,
    };
  } else if (latest) {
    segment = latest.segment;
    // The first segment's positions are its agent's message ids: a fuller snapshot may start earlier.
    firstPosition = latest.segment === 1 && !last ? null : latest.firstPosition;
    previous = { conversation: last?.conversation ?? null, history: last?.history ?? null };
  } else {
    segment = last ? last.segment + 1 : 1;
    firstPosition = last ? last.firstPosition + last.messageCount : null;
    previous = { conversation: last?.conversation ?? null, history: last?.history ?? null };
  }
  const { overlap, hash, history } = matchOverlap(messages, previous);
  return { segment, firstPosition: firstPosition ?? messages[0]?.id ?? 0, overlap, hash, history };
}

/**
 * Decides where a new snapshot of the task goes, before it replaces `latest`: when `latest` is of
 * an earlier agent lifetime it is kept first as a segment of its own (`keepSnapshotAsSegment`), and
 * the new snapshot starts the next segment; a second snapshot of the same lifetime takes its place.
 * Call it in the transaction that writes the snapshot, after `lockLatestSnapshot`.
 */
export async function placeSnapshot(
  trx: Db,
  taskId: string,
  latest: LockedSnapshot | undefined,
  messages: readonly AgentMessage[],
  parts: readonly string[],
): Promise<SnapshotPlacement> {
  const lifetime = await findAgentLifetime(trx, taskId);
  const same = latest ? sameLifetime(latest.lifetime, lifetime, latest.createdAt) : false;
  if (latest && !same) await keepSnapshotAsSegment(trx, taskId, latest);
  const last = latest && !same ? undefined : await findLastKeptSegment(trx, taskId);
  const placed = placeConversation(latest, same, last, messages);
  let keptBytes = 0;
  for (let i = placed.overlap; i < parts.length; i++) keptBytes += Buffer.byteLength(parts[i]!);
  return {
    segment: placed.segment,
    firstPosition: placed.firstPosition,
    overlap: placed.overlap,
    keptBytes,
    conversationHash: placed.hash,
    history: placed.history,
    lifetime,
  };
}

/** Records where the task's latest snapshot (just written) sits in its history. */
export async function writeSnapshotPlacement(trx: Db, taskId: string, placement: SnapshotPlacement): Promise<void> {
  const row = {
    segment: placement.segment,
    first_position: placement.firstPosition,
    overlap: placement.overlap,
    kept_bytes: placement.keptBytes,
    conversation_hash: placement.conversationHash,
    history_length: placement.history.length,
    history_hash: placement.history.hash,
    start_build_id: placement.lifetime.startBuildId,
    agent_url: placement.lifetime.agentUrl,
    started_at: placement.lifetime.startedAt,
  };
  await trx
    .insertInto('task_snapshot_segments')
    .values({ task_id: taskId, ...row })
    .onConflict((oc) => oc.column('task_id').doUpdateSet(row))
    .execute();
}

/**
 * Keeps the task's latest snapshot as a segment of its history: its placement, and its pages
 * without those that hold only repeated messages, copied inside the database.
 */
async function keepSnapshotAsSegment(trx: Db, taskId: string, latest: LockedSnapshot): Promise<void> {
  await trx
    .insertInto('task_history_segments')
    .values({
      task_id: taskId,
      segment: latest.segment,
      first_position: latest.firstPosition,
      message_count: latest.conversationLength - latest.overlap,
      overlap: latest.overlap,
      byte_size: latest.keptBytes,
      conversation_length: latest.conversationLength,
      conversation_hash: latest.conversationHash,
      history_length: latest.history.length,
      history_hash: latest.history.hash,
      start_build_id: latest.lifetime?.startBuildId ?? null,
      agent_url: latest.lifetime?.agentUrl ?? null,
      started_at: latest.lifetime?.startedAt ?? null,
      paused_at: latest.createdAt,
      source: latest.source,
    })
    .execute();
  const copied = await sql`
    INSERT INTO task_history_pages (task_id, segment, first_position, message_count, messages)
    SELECT task_id, ${latest.segment}::int, first_position, message_count, messages
    FROM task_snapshot_pages
    WHERE task_id = ${taskId} AND first_position + message_count > ${latest.overlap}::int`.execute(trx);
  if (Number(copied.numAffectedRows ?? 0) > 0 || latest.conversationLength <= latest.overlap) return;
  // A snapshot without pages (written by hand): pages of 64 messages, cut by PostgreSQL.
  await sql`
    INSERT INTO task_history_pages (task_id, segment, first_position, message_count, messages)
    SELECT s.task_id, ${latest.segment}::int, ((m.ordinality - 1) / 64 * 64)::int, count(*)::int,
           jsonb_agg(m.message ORDER BY m.ordinality)
    FROM task_snapshots s
    CROSS JOIN LATERAL jsonb_array_elements(s.log_snapshot -> 'data' -> 'messages') WITH ORDINALITY AS m (message, ordinality)
    WHERE s.task_id = ${taskId} AND jsonb_typeof(s.log_snapshot -> 'data' -> 'messages') = 'array'
    GROUP BY s.task_id, (m.ordinality - 1) / 64
    HAVING ((m.ordinality - 1) / 64 * 64 + count(*)) > ${latest.overlap}::int`.execute(trx);
}

type SegmentRow = {
  segment: number;
  first_position: string;
  message_count: number;
  overlap: number;
  byte_size: string;
  conversation_length: number;
  conversation_hash: string | null;
  history_length: number | null;
  history_hash: string | null;
  start_build_id: string | null;
  agent_url: string | null;
  started_at: Date | null;
  paused_at: Date;
  source: SnapshotSource;
};

function toKeptSegment(row: SegmentRow): KeptSegment {
  return {
    segment: row.segment,
    firstPosition: Number(row.first_position),
    messageCount: row.message_count,
    overlap: row.overlap,
    bytes: Number(row.byte_size),
    conversation: { length: row.conversation_length, hash: row.conversation_hash },
    history: { length: row.history_length ?? 0, hash: row.history_hash },
    startBuildId: row.start_build_id,
    agentUrl: row.agent_url,
    startedAt: row.started_at,
    pausedAt: row.paused_at,
    source: row.source,
  };
}

const segmentColumns = [
  'segment',
  'first_position',
  'message_count',
  'overlap',
  'byte_size',
  'conversation_length',
  'conversation_hash',
  'history_length',
  'history_hash',
  'start_build_id',
  'agent_url',
  'started_at',
  'paused_at',
  'source',
] as const;

/** The task's most recent kept segment, or undefined. */
async function findLastKeptSegment(db: Db, taskId: string): Promise<KeptSegment | undefined> {
  const row = await db
    .selectFrom('task_history_segments')
    .select(segmentColumns)
    .where('task_id', '=', taskId)
    .orderBy('segment', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row && toKeptSegment(row);
}

/** What a log needs of the kept part of a task's history: where it starts, and its last segment. */
export type KeptHistory = { firstPosition: number | null; last: KeptSegment | undefined };

/** Where the task's kept history starts (null: nothing kept) and its last segment, in one query each at most. */
export async function findKeptHistory(db: Db, taskId: string): Promise<KeptHistory> {
  const last = await findLastKeptSegment(db, taskId);
  if (!last) return { firstPosition: null, last };
  const first = await db
    .selectFrom('task_history_segments')
    .select('first_position')
    .where('task_id', '=', taskId)
    .orderBy('first_position')
    .limit(1)
    .executeTakeFirst();
  return { firstPosition: first ? Number(first.first_position) : last.firstPosition, last };
}

/**
 * Kept segments from the one holding `position` on, oldest first, at most `limit` of them: what a
 * log page starting at `position` may need, found through the (task_id, first_position) index.
 */
export async function keptSegmentsFrom(
  db: Db,
  taskId: string,
  position: number,
  limit: number,
): Promise<KeptSegment[]> {
  const result = await sql<SegmentRow>`
    SELECT ${sql.join(segmentColumns.map((c) => sql.ref(c)))} FROM task_history_segments
    WHERE task_id = ${taskId}
      AND first_position >= COALESCE((SELECT max(first_position) FROM task_history_segments
                                      WHERE task_id = ${taskId} AND first_position <= ${position}::bigint), 0)
    ORDER BY first_position, segment
    LIMIT ${limit}::int`.execute(db);
  return result.rows.map(toKeptSegment);
}

/** Every kept segment of the task, oldest first (their facts only, not their messages). */
export async function listKeptSegments(db: Db, taskId: string): Promise<KeptSegment[]> {
  const rows = await db
    .selectFrom('task_history_segments')
    .select(segmentColumns)
    .where('task_id', '=', taskId)
    .orderBy('segment')
    .execute();
  return rows.map(toKeptSegment);
}

/**
 * Messages of kept segments: for each range, the messages at conversation positions `from` to
 * `to` (inclusive) of its segment, read in one statement from the pages that hold them.
 */
export async function keptMessageRanges(
  db: Db,
  taskId: string,
  ranges: ReadonlyArray<{ segment: number; from: number; to: number }>,
): Promise<Map<number, unknown[]>> {
  const found = new Map<number, unknown[]>();
  if (ranges.length === 0) return found;
  const values = sql.join(ranges.map((r) => sql`(${r.segment}::int, ${r.from}::int, ${r.to}::int)`));
  const result = await sql<{ segment: number; lo: number; hi: number; first_position: number; messages: unknown[] }>`
    SELECT v.segment, v.lo, v.hi, p.first_position, p.messages
    FROM (VALUES ${values}) AS v (segment, lo, hi)
    CROSS JOIN LATERAL (
      SELECT first_position, messages FROM task_history_pages
      WHERE task_id = ${taskId} AND segment = v.segment AND first_position <= v.hi
        AND first_position >= (SELECT max(first_position) FROM task_history_pages
                               WHERE task_id = ${taskId} AND segment = v.segment AND first_position <= v.lo)
    ) p
    ORDER BY v.segment, p.first_position`.execute(db);
  const bySegment = new Map<number, typeof result.rows>();
  for (const row of result.rows) bySegment.set(row.segment, [...(bySegment.get(row.segment) ?? []), row]);
  for (const [segment, rows] of bySegment) {
    const start = rows[0]!.first_position;
    const { lo, hi } = rows[0]!;
    found.set(segment, rows.flatMap((row) => row.messages).slice(lo - start, hi - start + 1));
  }
  return found;
}

/** The kept messages of one segment (after its overlap), in order. */
export async function keptSegmentMessages(db: Db, taskId: string, segment: KeptSegment): Promise<unknown[]> {
  if (segment.messageCount === 0) return [];
  const from = segment.overlap;
  const to = segment.overlap + segment.messageCount - 1;
  return (await keptMessageRanges(db, taskId, [{ segment: segment.segment, from, to }])).get(segment.segment) ?? [];
}

/** What the history's bound dropped: one `task.history_dropped` event each. */
export type DroppedSegment = Pick<KeptSegment, 'segment' | 'messageCount' | 'bytes' | 'startedAt' | 'pausedAt'>;

/**
 * Holds the task's history to `maxBytes` (its kept segments and `latestBytes`, the latest
 * snapshot's): the oldest kept segments go first, each with a `task.history_dropped` event in
 * this transaction. The latest snapshot itself is never dropped.
 */
export async function boundTaskHistory(
  trx: Db,
  taskId: string,
  latestBytes: number,
  maxBytes: number,
): Promise<DroppedSegment[]> {
  const total = await trx
    .selectFrom('task_history_segments')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<string>('byte_size'), sql<string>`0`).as('bytes'))
    .where('task_id', '=', taskId)
    .executeTakeFirstOrThrow();
  let bytes = Number(total.bytes) + latestBytes;
  if (bytes <= maxBytes) return [];
  const dropped: DroppedSegment[] = [];
  for (const segment of await listKeptSegments(trx, taskId)) {
    if (bytes <= maxBytes) break;
    dropped.push(segment);
    bytes -= segment.bytes;
  }
  if (dropped.length === 0) return [];
  await trx
    .deleteFrom('task_history_segments')
    .where('task_id', '=', taskId)
    .where(
      'segment',
      'in',
      dropped.map((s) => s.segment),
    )
    .execute();
  const task = await trx.selectFrom('tasks').select('owner_id').where('id', '=', taskId).executeTakeFirstOrThrow();
  await insertEvents(
    trx,
    dropped.map((s) => ({
      type: 'task.history_dropped' as const,
      taskId,
      ownerId: task.owner_id,
      payload: {
        segment: s.segment,
        messageCount: s.messageCount,
        bytes: s.bytes,
        startedAt: s.startedAt?.toISOString() ?? null,
        pausedAt: s.pausedAt.toISOString(),
        maxHistoryBytes: maxBytes,
      },
    })),
  );
  return dropped.map(({ segment, messageCount, bytes, startedAt, pausedAt }) => ({
    segment,
    messageCount,
    bytes,
    startedAt,
    pausedAt,
  }));
}

/** Removes every kept segment of the task (its pages go by the cascade); how many there were. */
export async function deleteTaskHistory(trx: Db, taskId: string): Promise<number> {
  const result = await trx.deleteFrom('task_history_segments').where('task_id', '=', taskId).executeTakeFirst();
  return Number(result.numDeletedRows);
}
