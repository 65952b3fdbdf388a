import { type AgentMessage, conversationSchema } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { audit } from '../audit/audit.ts';
import {
  findSnapshotDocument,
  findSnapshotMeta,
  type SnapshotMeta,
  type StoredSnapshot,
  upsertSnapshot,
} from '../db/snapshots.ts';
import { findTask } from '../db/tasks.ts';
import { type Actor, systemActor } from '../domain/actor.ts';
import { HiatusError, taskNotFound } from '../domain/errors.ts';
import { type HistorySegment, historySegments } from './history.ts';
import { getTask } from './tasks.ts';

const knownSnapshotFormats = ['agentapi'] as const;

export type Snapshot = {
  taskId: string;
  format: 'agentapi';
  createdAt: Date;
  messageCount: number;
  bytes: number;
  messages: AgentMessage[];
};

/** Refuses a snapshot this version cannot read, with the format it found. */
export function assertKnownFormat(meta: Pick<SnapshotMeta, 'format' | 'taskId'>): asserts meta is SnapshotMeta & {
  format: 'agentapi';
} {
  if (!knownSnapshotFormats.includes(meta.format as 'agentapi')) {
    throw new HiatusError(
      'unknown_snapshot_format',
      `the snapshot of task ${meta.taskId} is in format ${JSON.stringify(meta.format)}, which this service cannot read (it reads: ${knownSnapshotFormats.join(', ')})`,
    );
  }
}

/** Validates stored messages on the way out: a damaged document is an error, never a crash. */
export function parseStoredMessages(taskId: string, raw: unknown): AgentMessage[] {
  const parsed = conversationSchema.safeParse(raw);
  if (!parsed.success) {
    throw new HiatusError(
      'unknown_snapshot_format',
      `the snapshot of task ${taskId} holds messages this service cannot read`,
    );
  }
  return parsed.data;
}

/** The whole stored snapshot of a task the actor may see; not_found when it has none. */
export async function getSnapshot(app: Pick<App, 'db'>, actor: Actor, taskId: string): Promise<Snapshot> {
  await getTask(app, actor, taskId);
  const meta = await findSnapshotMeta(app.db, taskId);
  const stored = meta && (await findSnapshotDocument(app.db, taskId));
  if (!meta || !stored) throw new HiatusError('not_found', `task ${taskId} has no snapshot`);
  assertKnownFormat(meta);
  const document = stored.document as { data?: { messages?: unknown } };
  return {
    taskId,
    format: meta.format,
    createdAt: stored.createdAt,
    messageCount: meta.messageCount,
    bytes: meta.bytes,
    messages: parseStoredMessages(taskId, document.data?.messages),
  };
}

/** The segments of a task's history the actor may see, oldest first, without their messages. */
export async function listHistorySegments(
  app: Pick<App, 'db'>,
  actor: Actor,
  taskId: string,
): Promise<{ taskId: string; segments: HistorySegment[] }> {
  await getTask(app, actor, taskId);
  return { taskId, segments: await historySegments(app, taskId) };
}

export type PushResult = { stored: true; snapshot: StoredSnapshot } | { stored: false; reason: string };

/**
 * Stores a snapshot pushed by the task's own workspace (the upstream's way, for agents the
 * service cannot reach). A push never replaces a snapshot taken later than it.
 * The caller has already checked that the pusher speaks for this task's workspace. A push is held
 * to what a pause takes from an agent: the same schema and bounds, the same size limit.
 */
export async function pushSnapshot(
  app: Pick<App, 'db' | 'settings'>,
  taskId: string,
  input: { messages: AgentMessage[]; takenAt?: Date; actor?: Actor },
): Promise<PushResult> {
  const messages = conversationSchema.safeParse(input.messages);
  if (!messages.success) {
    const first = messages.error.issues[0];
    const at = first?.path.length ? `messages.${first.path.join('.')}: ` : '';
    throw new HiatusError('bad_input', `${at}${first?.message ?? 'bad messages'}`);
  }
  // The same limit as a pause's: a pushed history is measured as the JSON it is stored as.
  const bytes = Buffer.byteLength(JSON.stringify(messages.data));
  if (bytes > app.settings.maxSnapshotBytes) {
    throw new HiatusError(
      'too_large',
      `the pushed history is ${bytes} bytes, over the limit of ${app.settings.maxSnapshotBytes} bytes`,
    );
  }
  const now = new Date();
  // A workspace's clock may run ahead: a push is never dated in the future.
  const takenAt = input.takenAt && input.takenAt < now ? input.takenAt : now;
  const stored = await app.db.transaction().execute(async (trx) => {
    const task = await findTask(trx, taskId);
    if (!task || task.status === 'deleted') throw taskNotFound(taskId);
    const stored = await upsertSnapshot(trx, {
      taskId,
      messages: messages.data,
      source: 'push',
      takenAt,
      onlyIfNotOlderThanStored: true,
      maxHistoryBytes: app.settings.maxHistoryBytes,
    });
    if (stored) {
      await audit(trx, input.actor ?? systemActor, {
        action: 'snapshot.push',
        resourceType: 'task',
        resourceId: taskId,
        diff: { snapshot: { messageCount: stored.messageCount, bytes: stored.bytes, takenAt: stored.createdAt } },
      });
    }
    return stored;
  });
  return stored
    ? { stored: true, snapshot: stored }
    : { stored: false, reason: 'a newer snapshot is already stored; the push was ignored' };
}
