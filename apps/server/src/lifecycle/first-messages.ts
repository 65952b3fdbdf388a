import type { Db } from '../db/connection.ts';
import { insertEvents } from '../db/events.ts';
import { insertQueuedMessage } from '../db/inbox.ts';
import { findTemplateById } from '../db/templates.ts';
import { defaults } from '../defaults.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { resumeRecap } from '../domain/resume-recap.ts';
import { previousConversation } from './previous-conversation.ts';

/*
 * Messages Hiatus itself queues first in a task's inbox, inside a lifecycle change's transaction
 * (which holds the workspace lock): the prompt of an agent it does not start, at the task's
 * creation, and a template's resume recap, at a resume. They are queued as a user's sends are
 * (inbox/inbox.ts `queueInTransaction`: the message, and `task.message_queued`), but not held to the
 * inbox's limit: a full inbox must not refuse the change they belong to. (inbox/ imports lifecycle/,
 * so lifecycle/ may not import it: no two folders import each other.)
 */

type TaskOfMessage = { id: string; ownerId: string };

async function queueFirst(trx: Db, actor: Actor, task: TaskOfMessage, content: string, resumed: boolean) {
  const message = await insertQueuedMessage(trx, { taskId: task.id, content, senderId: initiatorId(actor) });
  await insertEvents(trx, [
    {
      type: 'task.message_queued',
      taskId: task.id,
      ownerId: task.ownerId,
      payload: { messageId: message.id, resumed },
    },
  ]);
  return message;
}

/**
 * Queues the prompt of a task whose agent Hiatus does not start (`agentUrl`): no driver hands it
 * over, so it goes as the inbox's first message, delivered once the agent is stable. Nothing for
 * an empty prompt. Answers the message's id.
 */
export async function queuePrompt(
  trx: Db,
  actor: Actor,
  task: TaskOfMessage & { prompt: string },
): Promise<string | undefined> {
  if (task.prompt.trim() === '') return undefined;
  return (await queueFirst(trx, actor, task, task.prompt, false)).id;
}

/**
 * Queues a resume's recap when the task's template asks for one (`resume.message`): the original
 * prompt and the last exchanges of the previous conversation, within `resume.messageMaxBytes`.
 * Call it in the resume's transaction before anything else is queued, so it goes first. Answers
 * the message's id.
 */
export async function queueResumeRecap(
  trx: Db,
  actor: Actor,
  task: TaskOfMessage & { prompt: string; templateId: string | null },
): Promise<string | undefined> {
  if (!task.templateId) return undefined;
  const resume = (await findTemplateById(trx, task.templateId))?.resume;
  if (!resume?.message) return undefined;
  const budget = resume.messageMaxBytes ?? defaults.resumeMessageMaxBytes;
  // The recap holds at most `budget` bytes of the conversation: no need to read more of it.
  const conversation = await previousConversation({ db: trx }, task.id, budget);
  const content = resumeRecap(task.prompt, conversation, budget);
  return (await queueFirst(trx, actor, task, content, true)).id;
}
