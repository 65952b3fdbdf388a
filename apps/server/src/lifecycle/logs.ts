import { AgentError, type AgentHistory } from '../agentapi/client.ts';
import type { AgentMessage } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import type { Db } from '../db/connection.ts';
import {
  findKeptHistory,
  type KeptSegment,
  keptMessageRanges,
  keptSegmentsFrom,
  placeConversation,
  sameLifetime,
} from '../db/history.ts';
import { listQueuedPreviews } from '../db/inbox.ts';
import { findSnapshotMeta, type SnapshotMeta, snapshotMessageRange } from '../db/snapshots.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { assertKnownFormat, parseStoredMessages } from './snapshots.ts';
import { getTask } from './tasks.ts';

/**
 * One line of a task's log: the agent's message with its role in the user's words, its place in
 * the task's whole history (`position`, what `cursor` counts) and the segment (agent lifetime) it
 * belongs to. `id` is the agent's own message id, which starts again with every new agent.
 */
export type LogEntry = {
  id: number;
  position: number;
  segment: number;
  role: 'input' | 'output';
  content: string;
  time: Date;
};

/**
 * A segment of a task's history: one agent lifetime, from the start of its workspace to the pause
 * that kept its conversation. Entries of one segment follow each other; a new segment is a new agent.
 */
export type LogSegment = {
  segment: number;
  /** Where its entries come from: an earlier lifetime kept in the history, the latest snapshot, or the live agent. */
  source: 'kept' | 'snapshot' | 'live';
  /** When its agent started (its start build completed); null when unknown. */
  startedAt: Date | null;
  /** When its conversation was taken (the pause's snapshot); null for the live agent. */
  pausedAt: Date | null;
  /** Position of its first entry, and its number of entries (the live agent's: as of this read). */
  firstPosition: number;
  entryCount: number;
  /** Leading messages of its agent's conversation left out: they repeat the previous segment's (see the README). */
  repeated: number;
};

export type LogPage = {
  /** Where the newest entries come from: the running agent, or the snapshot stored at the last pause. */
  source: 'live' | 'snapshot';
  /** When the snapshot was taken; null for live entries, or when there is no snapshot. */
  snapshotAt: Date | null;
  /** Oldest first, across segments: the kept earlier lifetimes, the latest snapshot, then the live agent. */
  entries: LogEntry[];
  /**
   * The segments the page's entries belong to (and any empty one between them), oldest first, after
   * the segment of the entry at `cursor` when there is one: a boundary at the page's start shows.
   */
  segments: LogSegment[];
  /** The position to pass as `cursor` for the next page (the last entry's); null on the last page. */
  nextCursor: number | null;
  /** Why the log is empty or not live, when it is either. */
  notice: string | null;
  /**
   * Messages sent through Hiatus and still waiting in the task's inbox, oldest first: not yet in
   * the agent's conversation (so never in `entries`), cancellable with `tasks.cancelMessage`.
   * The same on every page: the first `defaults.pendingShown`, each cut to a preview.
   */
  pending: PendingMessage[];
  /** How many messages wait in the inbox in all (`pending` shows the first of them). */
  pendingCount: number;
};

type LogApp = Pick<App, 'agent' | 'db' | 'heavyReads' | 'liveHistories' | 'reads'>;

/**
 * A page of a task's log: the entries after position `cursor` of its whole history, oldest to
 * newest: the kept segments of earlier agent lifetimes, the latest snapshot, then (while the task
 * is active and its agent answers) the live agent; with the inbox's pending messages. Reading
 * changes nothing: it never wakes a task nor resets its idle clock. A page reads only the segments
 * and stored pages that hold it, however long the history.
 */
export async function readLogs(
  app: LogApp,
  actor: Actor,
  taskId: string,
  options: { cursor?: number; limit?: number } = {},
): Promise<LogPage> {
  const task = await getTask(app, actor, taskId);
  const queued = task.status === 'deleted' ? { pending: [], pendingCount: 0 } : await pendingMessages(app, task.id);
  return { ...(await logEntries(app, actor, task, options)), ...queued };
}

/** A part of the history a page may read: a segment with its positions and a way to read them. */
type Part = {
  meta: LogSegment;
  /** Messages at positions `from` to `to` (inclusive) of the whole history, all within this part. */
  read(from: number, to: number): Promise<AgentMessage[]>;
};

async function logEntries(
  app: LogApp,
  actor: Actor,
  task: Task,
  options: { cursor?: number; limit?: number },
): Promise<Omit<LogPage, 'pending' | 'pendingCount'>> {
  const limit = Math.min(Math.max(options.limit ?? defaults.logPageSize, 1), defaults.maxLogPageSize);
  let notice: string | null = null;
  let live: AgentHistory | undefined;
  if (task.status === 'active') {
    try {
      live = await liveHistory(app, actor, task);
    } catch (error) {
      if (!(error instanceof AgentError)) throw error;
      notice = `the agent did not answer (${error.message}); showing the snapshot`;
    }
  }
  // A paused task's log may come from the read replica: its history only changes at the next pause.
  // The whole page comes from one database, so it is never half of two histories; a replica that
  // has not yet replayed the first snapshot defers to the primary.
  let db = task.status === 'paused' ? app.reads() : app.db;
  let meta = await findSnapshotMeta(db, task.id);
  if (!meta && db !== app.db) {
    db = app.db;
    meta = await findSnapshotMeta(db, task.id);
  }
  if (meta) assertKnownFormat(meta);
  const kept = await findKeptHistory(db, task.id);

  const tail: Part[] = [];
  const liveLifetime = {
    startBuildId: task.latestBuild?.id ?? null,
    agentUrl: task.agentUrl,
    startedAt: task.latestBuild?.completedAt ?? null,
  };
  const liveReplacesSnapshot =
    live !== undefined && meta !== undefined && sameLifetime(meta.placement.lifetime, liveLifetime, meta.createdAt);
  if (meta && !liveReplacesSnapshot) tail.push(snapshotPart(db, task.id, meta));
  if (live) tail.push(livePart(live.messages, liveLifetime.startedAt, meta, liveReplacesSnapshot, kept.last));

  if (!meta && !live && !kept.last) {
    const why = task.status === 'active' ? notice : `the task is ${task.status} and no snapshot was ever taken`;
    return {
      source: 'snapshot',
      snapshotAt: null,
      entries: [],
      segments: [],
      nextCursor: null,
      notice: why ?? 'no snapshot',
    };
  }
  const start = kept.firstPosition ?? tail[0]?.meta.firstPosition ?? 0;
  const from = options.cursor === undefined ? start : Math.max(options.cursor + 1, start);
  const keptEnd = tail[0]?.meta.firstPosition ?? (kept.last ? kept.last.firstPosition + kept.last.messageCount : 0);

  // One more entry than the page holds: whether there is a next page.
  const wanted = limit + 1;
  const entries: LogEntry[] = [];
  const segments: LogSegment[] = [];
  // The segment of the entry just before the page (the cursor's).
  let before = kept.last && from === keptEnd ? keptSegmentMeta(kept.last) : undefined;
  const take = async (parts: Part[]): Promise<void> => {
    for (const part of parts) {
      const { meta: segment } = part;
      const end = segment.firstPosition + segment.entryCount;
      if (end === from && segment.entryCount > 0) before = segment;
      if (entries.length >= wanted || end < from || (end === from && segment.entryCount > 0)) continue;
      if (segment.entryCount === 0) {
        if (segments.at(-1)?.segment !== segment.segment) segments.push(segment);
        continue;
      }
      const lo = Math.max(from, segment.firstPosition);
      const hi = Math.min(end - 1, lo + wanted - entries.length - 1);
      const messages = await part.read(lo, hi);
      if (messages.length === 0) continue;
      if (segments.at(-1)?.segment !== segment.segment) segments.push(segment);
      messages.forEach((message, i) => {
        entries.push(toLogEntry(message, lo + i, segment.segment));
      });
    }
  };
  if (kept.last && from < keptEnd) await take(await keptParts(db, task.id, from, keptEnd, wanted));
  await take(tail);

  const page = withinBytes(entries.slice(0, limit), defaults.maxLogPageBytes);
  // An empty segment found only past the page's end belongs to the next page.
  const last = page.at(-1);
  const shown = segments.filter(
    (s) => !last || s.firstPosition <= last.position || (s.entryCount === 0 && s.firstPosition === last.position + 1),
  );
  if (before && options.cursor !== undefined && shown[0]?.segment !== before.segment) shown.unshift(before);
  return {
    source: live ? 'live' : 'snapshot',
    snapshotAt: live ? null : (meta?.createdAt ?? null),
    entries: page,
    segments: shown,
    nextCursor: entries.length > page.length ? (last?.position ?? null) : null,
    notice,
  };
}

/**
 * The first entries whose contents come to at most `maxBytes` (UTF-8), and always the first one: a
 * page of many large messages ends early, and the next page goes on from there.
 */
function withinBytes(entries: LogEntry[], maxBytes: number): LogEntry[] {
  let bytes = 0;
  for (const [i, entry] of entries.entries()) {
    bytes += Buffer.byteLength(entry.content);
    if (bytes > maxBytes && i > 0) return entries.slice(0, i);
  }
  return entries;
}

/** The agent's whole history, fetched at most once every few seconds for all readers of its pages. */
function liveHistory(
  app: Pick<App, 'agent' | 'heavyReads' | 'liveHistories'>,
  actor: Actor,
  task: Task,
): Promise<AgentHistory> {
  return app.liveHistories.get(task.id, task.agentUrl, () =>
    app.heavyReads.run(initiatorId(actor) ?? 'system', () => app.agent(task.agentUrl, agentTrust(task)).messages()),
  );
}

/**
 * The kept segments from the one holding `from` to the end of the kept history, as parts: at
 * most enough of them to fill `wanted` entries (empty segments fill none), their messages read in
 * one statement.
 */
async function keptParts(db: Db, taskId: string, from: number, end: number, wanted: number): Promise<Part[]> {
  const segments: KeptSegment[] = [];
  // From the segment of the entry before `from`: the page names it (see LogPage.segments).
  let position = Math.max(from - 1, 0);
  let entries = 0;
  while (position < end && entries < wanted) {
    const batch = await keptSegmentsFrom(db, taskId, position, wanted + 16);
    const fresh = batch.filter((s) => !segments.some((known) => known.segment === s.segment));
    if (fresh.length === 0) break;
    segments.push(...fresh);
    for (const s of fresh) entries += Math.max(0, s.firstPosition + s.messageCount - Math.max(from, s.firstPosition));
    const lastOne = fresh.at(-1)!;
    position = lastOne.firstPosition + lastOne.messageCount;
  }
  // Read every range the page needs at once, then hand each part its own.
  const ranges: Array<{ segment: number; from: number; to: number }> = [];
  let left = wanted;
  for (const s of segments) {
    const lo = Math.max(from, s.firstPosition);
    const hi = Math.min(s.firstPosition + s.messageCount - 1, lo + left - 1);
    if (hi < lo || left <= 0) continue;
    ranges.push({ segment: s.segment, from: s.overlap + lo - s.firstPosition, to: s.overlap + hi - s.firstPosition });
    left -= hi - lo + 1;
  }
  const messages = await keptMessageRanges(db, taskId, ranges);
  return segments.map((s) => ({
    meta: keptSegmentMeta(s),
    read: async (lo, hi) => {
      const range = ranges.find((r) => r.segment === s.segment);
      const raw = messages.get(s.segment) ?? [];
      const offset = range ? s.overlap + lo - s.firstPosition - range.from : 0;
      return parseStoredMessages(taskId, raw.slice(offset, offset + hi - lo + 1));
    },
  }));
}

function keptSegmentMeta(s: KeptSegment): LogSegment {
  return {
    segment: s.segment,
    source: 'kept',
    startedAt: s.startedAt,
    pausedAt: s.pausedAt,
    firstPosition: s.firstPosition,
    entryCount: s.messageCount,
    repeated: s.overlap,
  };
}

/** The latest snapshot as a part: its messages after those it repeats, from its stored pages. */
function snapshotPart(db: Db, taskId: string, meta: SnapshotMeta): Part {
  const { segment, firstPosition, overlap, lifetime } = meta.placement;
  return {
    meta: {
      segment,
      source: 'snapshot',
      startedAt: lifetime?.startedAt ?? null,
      pausedAt: meta.createdAt,
      firstPosition,
      entryCount: Math.max(meta.messageCount - overlap, 0),
      repeated: overlap,
    },
    read: async (from, to) => {
      const raw = await snapshotMessageRange(db, taskId, overlap + from - firstPosition, overlap + to - firstPosition);
      return parseStoredMessages(taskId, raw);
    },
  };
}

/** The placement of a live conversation, computed once per fetched history (the matching rule hashes it). */
const livePlacements = new WeakMap<
  readonly AgentMessage[],
  { key: string; placed: ReturnType<typeof placeConversation> }
>();

/** The live agent as a part: after the latest snapshot, or in its place when it is of the same agent. */
function livePart(
  messages: readonly AgentMessage[],
  startedAt: Date | null,
  meta: SnapshotMeta | undefined,
  replacesSnapshot: boolean,
  last: KeptSegment | undefined,
): Part {
  const latest = meta && {
    ...meta.placement,
    conversationLength: meta.messageCount,
  };
  const key = JSON.stringify([latest ?? null, replacesSnapshot, last?.segment ?? null, last?.conversation ?? null]);
  let cached = livePlacements.get(messages);
  if (cached?.key !== key) {
    cached = { key, placed: placeConversation(latest, replacesSnapshot, last, messages) };
    livePlacements.set(messages, cached);
  }
  const { segment, firstPosition, overlap } = cached.placed;
  return {
    meta: {
      segment,
      source: 'live',
      startedAt,
      pausedAt: null,
      firstPosition,
      entryCount: Math.max(messages.length - overlap, 0),
      repeated: overlap,
    },
    read: async (from, to) => messages.slice(overlap + from - firstPosition, overlap + to - firstPosition + 1),
  };
}

function toLogEntry(message: AgentMessage, position: number, segment: number): LogEntry {
  return {
    id: message.id,
    position,
    segment,
    role: message.role === 'user' ? 'input' : 'output',
    content: message.content,
    time: new Date(message.time),
  };
}

/**
 * A queued message as `tasks.logs` shows it: pending, not yet in the agent's conversation. Only its
 * start: a page of a full inbox of large messages would otherwise be as large as the inbox (1,000 ×
 * 1 MB); `tasks.message` answers one whole.
 */
export type PendingMessage = {
  messageId: string;
  /** The first `defaults.pendingPreviewChars` characters of the message. */
  content: string;
  /** Whether `content` is only the start of the message. */
  truncated: boolean;
  /** The whole message's size, UTF-8. */
  bytes: number;
  queuedAt: Date;
  /** Times the agent was asked to take it, and why the last try failed. */
  attempts: number;
  lastError: string | null;
};

/** The task's first queued messages, oldest first, as previews, and how many are queued in all. */
async function pendingMessages(
  app: Pick<App, 'db'>,
  taskId: string,
): Promise<{ pending: PendingMessage[]; pendingCount: number }> {
  const { items, total } = await listQueuedPreviews(app.db, taskId, {
    limit: defaults.pendingShown,
    previewChars: defaults.pendingPreviewChars,
  });
  const pending = items.map((m) => ({
    messageId: m.id,
    content: m.preview,
    truncated: Buffer.byteLength(m.preview) < m.bytes,
    bytes: m.bytes,
    queuedAt: m.queuedAt,
    attempts: m.attempts,
    lastError: m.lastError,
  }));
  return { pending, pendingCount: total };
}
