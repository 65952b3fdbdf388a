import { type AgentMessage, conversationSchema } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { keptSegmentMessages, listKeptSegments } from '../db/history.ts';
import { findSnapshotMeta, snapshotMessageRange } from '../db/snapshots.ts';
import { HiatusError } from '../domain/errors.ts';

// A leaf of lifecycle/: it imports no other service, so the change path (a resume's transaction)
// may read the history through it without a circle.

/** A segment of a task's history (one agent lifetime), without its messages. */
export type HistorySegment = {
  segment: number;
  /** `kept`: an earlier lifetime's, kept beside the latest snapshot; `snapshot`: the latest snapshot. */
  source: 'kept' | 'snapshot';
  /** When its agent started (its start build completed); null when unknown. */
  startedAt: Date | null;
  /** When its conversation was taken. */
  pausedAt: Date;
  /** Position in the task's whole history of its first message. */
  firstPosition: number;
  /** Its messages in the history, and the leading messages of its agent's conversation left out as repeats. */
  messageCount: number;
  repeated: number;
  /** Bytes of its messages as JSON: what the history's bound (HIATUS_MAX_HISTORY_BYTES) counts. */
  bytes: number;
};

/** Every segment of the task's history, oldest first: the kept ones, then the latest snapshot. */
export async function historySegments(app: Pick<App, 'db'>, taskId: string): Promise<HistorySegment[]> {
  const kept = await listKeptSegments(app.db, taskId);
  const meta = await findSnapshotMeta(app.db, taskId);
  const segments: HistorySegment[] = kept.map((s) => ({
    segment: s.segment,
    source: 'kept',
    startedAt: s.startedAt,
    pausedAt: s.pausedAt,
    firstPosition: s.firstPosition,
    messageCount: s.messageCount,
    repeated: s.overlap,
    bytes: s.bytes,
  }));
  if (meta) {
    const { segment, firstPosition, overlap, lifetime } = meta.placement;
    segments.push({
      segment,
      source: 'snapshot',
      startedAt: lifetime?.startedAt ?? null,
      pausedAt: meta.createdAt,
      firstPosition,
      messageCount: Math.max(meta.messageCount - overlap, 0),
      repeated: overlap,
      bytes: meta.placement.keptBytes,
    });
  }
  return segments;
}

export type TaskHistory = {
  /**
   * AgentAPI messages, oldest first, across every segment (repeats left out), renumbered 0, 1, 2…
   * (AgentAPI's id is a message's position in its conversation): a conversation a new agent can be
   * handed as it is.
   */
  messages: AgentMessage[];
  /** The segments the messages come from, oldest first, with how many of each are included. */
  segments: Array<HistorySegment & { included: number }>;
  /** True when older messages were left out to stay within `maxBytes` (or had been dropped by the bound). */
  truncated: boolean;
};

/**
 * A task's whole stored history as one AgentAPI conversation: every kept segment (an earlier agent
 * lifetime), then the latest snapshot, oldest first. For a resumed agent's conversation file; the
 * caller has checked access. With `maxBytes`, only the newest messages whose JSON fits in it, read
 * from the newest segment back (older segments are then not read at all).
 *
 * @example
 * const { messages } = await readTaskHistory(app, task.id, { maxBytes: 4 * 1024 * 1024 });
 * await writeFile(file, JSON.stringify({ messages }));
 */
export async function readTaskHistory(
  app: Pick<App, 'db'>,
  taskId: string,
  options: { maxBytes?: number } = {},
): Promise<TaskHistory> {
  const meta = await findSnapshotMeta(app.db, taskId);
  if (meta && meta.format !== 'agentapi') throw unreadable(taskId);
  const segments = await historySegments(app, taskId);
  const kept = new Map((await listKeptSegments(app.db, taskId)).map((s) => [s.segment, s]));
  let budget = options.maxBytes ?? Number.POSITIVE_INFINITY;
  let truncated = (segments[0]?.segment ?? 1) > 1;
  const newestFirst: Array<{ segment: HistorySegment; messages: AgentMessage[] }> = [];
  for (const segment of [...segments].reverse()) {
    if (budget <= 0) {
      truncated = true;
      break;
    }
    const stored = kept.get(segment.segment);
    const raw =
      segment.source === 'kept' && stored
        ? await keptSegmentMessages(app.db, taskId, stored)
        : segment.messageCount > 0
          ? await snapshotMessageRange(app.db, taskId, segment.repeated, segment.repeated + segment.messageCount - 1)
          : [];
    const parsed = conversationSchema.safeParse(raw);
    if (!parsed.success) throw unreadable(taskId);
    const messages = parsed.data;
    let from = messages.length;
    while (from > 0) {
      const bytes = Buffer.byteLength(JSON.stringify(messages[from - 1]));
      if (bytes > budget) break;
      budget -= bytes;
      from--;
    }
    if (from > 0) {
      truncated = true;
      budget = 0;
    }
    newestFirst.push({ segment, messages: messages.slice(from) });
  }
  const oldestFirst = newestFirst.reverse();
  let id = 0;
  return {
    messages: oldestFirst.flatMap(({ messages }) => messages.map((message) => ({ ...message, id: id++ }))),
    segments: oldestFirst.map(({ segment, messages }) => ({ ...segment, included: messages.length })),
    truncated,
  };
}

function unreadable(taskId: string): HiatusError {
  return new HiatusError(
    'unknown_snapshot_format',
    `the history of task ${taskId} holds messages this service cannot read`,
  );
}
