import type { AgentMessage } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { readTaskHistory } from './history.ts';

/**
 * The conversation a task's agents had before its resume, oldest first, as one AgentAPI
 * conversation: the task's whole history (every kept segment, then the latest snapshot, repeats
 * left out, renumbered), the newest messages within `maxBytes`. What a resumed workspace is handed
 * (the file HIATUS_PREVIOUS_CONVERSATION names) and what a template's resume recap is made from.
 * Empty when the task has no snapshot.
 *
 * @example const messages = await previousConversation({ db: trx }, taskId, 8192); // in a change's transaction
 */
export async function previousConversation(
  app: Pick<App, 'db'>,
  taskId: string,
  maxBytes: number,
): Promise<AgentMessage[]> {
  return (await readTaskHistory(app, taskId, { maxBytes })).messages;
}
