import { AgentError } from '../agentapi/client.ts';
import type { AgentMessage } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { listQueuedMessages } from '../db/inbox.ts';
import { findSnapshotMeta, snapshotMessageRange } from '../db/snapshots.ts';
import type { Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { assertKnownFormat, parseStoredMessages } from './snapshots.ts';
import { getTask } from './tasks.ts';

/** One line of a task's log: the agent's message with its role in the user's words. */
export type LogEntry = { id: number; role: 'input' | 'output'; content: string; time: Date };

export type LogPage = {
  /** Where the entries came from: the running agent, or the snapshot stored at the last pause. */
  source: 'live' | 'snapshot';
  /** When the snapshot was taken; null for live entries, or when there is no snapshot. */
  snapshotAt: Date | null;
  entries: LogEntry[];
  /** The id to pass as `cursor` for the next page; null on the last page. */
  nextCursor: number | null;
  /** Why the log is empty or not live, when it is either. */
  notice: string | null;
  /**
   * Messages sent through Hiatus and still waiting in the task's inbox, oldest first: not yet in
   * the agent's conversation (so never in `entries`), cancellable with `tasks.cancelMessage`.
   * The same on every page.
   */
  pending: PendingMessage[];
};

/**
 * A page of a task's log, after message id `cursor`: live from the agent while the task is
 * active, else (or when the agent cannot answer) from its snapshot, with the inbox's pending
 * messages. Reading changes nothing: it never wakes a task nor resets its idle clock.
 */
export async function readLogs(
  app: Pick<App, 'agent' | 'db' | 'heavyReads' | 'liveHistories' | 'reads'>,
  actor: Actor,
  taskId: string,
  options: { cursor?: number; limit?: number } = {},
): Promise<LogPage> {
  const task = await getTask(app, actor, taskId);
  const pending = task.status === 'deleted' ? [] : await pendingMessages(app, task.id);
  return { ...(await logEntries(app, actor, task, options)), pending };
}

async function logEntries(
  app: Pick<App, 'agent' | 'db' | 'heavyReads' | 'liveHistories' | 'reads'>,
  actor: Actor,
  task: Task,
  options: { cursor?: number; limit?: number },
): Promise<Omit<LogPage, 'pending'>> {
  const limit = Math.min(Math.max(options.limit ?? defaults.logPageSize, 1), defaults.maxLogPageSize);
  let notice: string | null = null;
  if (task.status === 'active') {
    try {
      return await liveLogs(app, actor, task, options.cursor, limit);
    } catch (error) {
      if (!(error instanceof AgentError)) throw error;
      notice = `the agent did not answer (${error.message}); showing the snapshot`;
    }
  }
  return snapshotLogs(app, task, options.cursor, limit, notice);
}

/**
 * A page of the agent's history, served from the history fetched within the last few seconds
 * (`app.liveHistories`) when there is one: paging through a long log fetches it once, not once a
 * page. A fetch is a heavy read: it waits for a place in `app.heavyReads`.
 */
async function liveLogs(
  app: Pick<App, 'agent' | 'heavyReads' | 'liveHistories'>,
  actor: Actor,
  task: Task,
  cursor: number | undefined,
  limit: number,
): Promise<Omit<LogPage, 'pending'>> {
  const { messages } = await app.liveHistories.get(task.id, task.agentUrl, () =>
    app.heavyReads.run(initiatorId(actor) ?? 'system', () => app.agent(task.agentUrl, agentTrust(task)).messages()),
  );
  const after = cursor === undefined ? messages : messages.filter((m) => m.id > cursor);
  const page = after.slice(0, limit);
  return {
    source: 'live',
    snapshotAt: null,
    entries: page.map(toLogEntry),
    nextCursor: after.length > limit ? (page.at(-1)?.id ?? null) : null,
    notice: null,
  };
}

async function snapshotLogs(
  app: Pick<App, 'db' | 'reads'>,
  task: Task,
  cursor: number | undefined,
  limit: number,
  notice: string | null,
): Promise<Omit<LogPage, 'pending'>> {
  // A paused task's log may come from the read replica: the snapshot only changes at the next pause.
  // Its meta and messages come from the same database, so a page is never half of two snapshots;
  // a replica that has not yet replayed the first snapshot defers to the primary.
  let db = task.status === 'paused' ? app.reads() : app.db;
  let meta = await findSnapshotMeta(db, task.id);
  if (!meta && db !== app.db) {
    db = app.db;
    meta = await findSnapshotMeta(db, task.id);
  }
  if (!meta) {
    const why = task.status === 'active' ? notice : `the task is ${task.status} and no snapshot was ever taken`;
    return { source: 'snapshot', snapshotAt: null, entries: [], nextCursor: null, notice: why ?? 'no snapshot' };
  }
  assertKnownFormat(meta);
  const first = meta.firstMessageId ?? 0;
  const from = cursor === undefined ? 0 : Math.max(cursor + 1 - first, 0);
  const to = from + limit - 1;
  const messages = from < meta.messageCount ? await snapshotMessageRange(db, task.id, from, to) : [];
  const entries = parseStoredMessages(task.id, messages).map(toLogEntry);
  return {
    source: 'snapshot',
    snapshotAt: meta.createdAt,
    entries,
    nextCursor: to + 1 < meta.messageCount ? (entries.at(-1)?.id ?? null) : null,
    notice,
  };
}

function toLogEntry(message: AgentMessage): LogEntry {
  return {
    id: message.id,
    role: message.role === 'user' ? 'input' : 'output',
    content: message.content,
    time: new Date(message.time),
  };
}

/** A queued message as `tasks.logs` shows it: pending, not yet in the agent's conversation. */
export type PendingMessage = {
  messageId: string;
  content: string;
  queuedAt: Date;
  /** Times the agent was asked to take it, and why the last try failed. */
  attempts: number;
  lastError: string | null;
};

/** The task's queued messages, oldest first, for its log. */
async function pendingMessages(app: Pick<App, 'db'>, taskId: string): Promise<PendingMessage[]> {
  const queued = await listQueuedMessages(app.db, taskId, defaults.maxLogPageSize);
  return queued.map((m) => ({
    messageId: m.id,
    content: m.content,
    queuedAt: m.queuedAt,
    attempts: m.attempts,
    lastError: m.lastError,
  }));
}
