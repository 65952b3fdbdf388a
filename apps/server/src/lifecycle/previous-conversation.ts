import { type AgentMessage, conversationSchema } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { findSnapshotDocument, findSnapshotMeta } from '../db/snapshots.ts';
import { HiatusError } from '../domain/errors.ts';

/**
 * The conversation a task's agent had before its resume, oldest first, as AgentAPI gave it: what
 * a resumed workspace is handed (the file HIATUS_PREVIOUS_CONVERSATION names) and what a template's
 * resume recap is made from. Empty when the task has no snapshot. For now the latest snapshot: the
 * one place to change when the history across cycles is kept.
 *
 * Read as `snapshots.get` reads it (lifecycle/snapshots.ts), without importing that module, which
 * sits above the lifecycle change path that calls this one.
 *
 * @example const messages = await previousConversation({ db: trx }, taskId); // in a change's transaction
 */
export async function previousConversation(app: Pick<App, 'db'>, taskId: string): Promise<AgentMessage[]> {
  const meta = await findSnapshotMeta(app.db, taskId);
  const stored = meta && (await findSnapshotDocument(app.db, taskId));
  if (!meta || !stored) return [];
  const document = stored.document as { data?: { messages?: unknown } };
  const parsed = conversationSchema.safeParse(document.data?.messages);
  if (meta.format !== 'agentapi' || !parsed.success) {
    throw new HiatusError(
      'unknown_snapshot_format',
      `the snapshot of task ${taskId} holds a conversation this service cannot read (format ${JSON.stringify(meta.format)})`,
    );
  }
  return parsed.data;
}
