import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import { claimDirectDelivery, dropDirectDelivery, type InboxMessage, markMessageDelivered } from '../db/inbox.ts';
import { findTask, resetIdleClock, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { HiatusError, taskNotFound } from '../domain/errors.ts';
import { deriveState, type SendRule, type TaskStatus } from '../domain/lifecycle.ts';
import { agentFailure } from '../lifecycle/pause.ts';
import { deliveryLeaseMs } from '../lifecycle/pause-hold.ts';
import { getTask } from '../lifecycle/tasks.ts';
import { commitTaskChange } from '../lifecycle/transition.ts';
import { queueInTransaction, queueMessage } from './inbox.ts';

/**
 * What a send did: the agent took the message now (`queued: false`), or it is in the task's
 * inbox (`queued: true`, with its id for `tasks.cancelMessage`), to be delivered once the task is
 * active and its agent stable. `resumed`: this call queued the task's resume, in the transaction
 * that stored the message (concurrent sends share one resume, and only its caller's says so).
 */
export type SendResult =
  | { queued: false; task: Task; resumed: false }
  | { queued: true; messageId: string; task: Task; resumed: boolean };

/** A send re-reads the task this many times when it changes under it (a pause or resume racing). */
const sendRounds = 4;

/**
 * Sends a user message to the task's agent, answering at once. An active task whose agent is
 * stable, with nothing queued before, gets it now; a busy agent's task, or one with earlier
 * messages waiting, gets it queued in its inbox. With `resumeIfPaused`, a paused task (or one
 * whose stop failed) is resumed and the message queued in one transaction, and a starting task's
 * message is queued. What each state allows is the state table's `send` column.
 */
export async function sendToTask(
  app: Pick<App, 'agent' | 'db' | 'events' | 'liveHistories' | 'settings'>,
  actor: Actor,
  taskId: string,
  input: string,
  options: { resumeIfPaused?: boolean } = {},
): Promise<SendResult> {
  const resumeIfPaused = options.resumeIfPaused === true;
  // The rule under the workspace lock decides whether a message is queued; a changed state is read again.
  const accepts = (now: Task) => queueableRule(deriveState(now.deletedAt, now.latestBuild).send, resumeIfPaused);
  for (let round = 1; ; round++) {
    const task = await getTask(app, actor, taskId);
    const rule = deriveState(task.deletedAt, task.latestBuild).send;
    if (rule === 'refuse' || (rule !== 'deliver' && !resumeIfPaused)) throw notActive(task);
    let message: InboxMessage | undefined;
    let resumed = false;
    if (rule === 'deliver' && (await deliverNow(app, actor, task, input))) {
      return { queued: false, task: await getTask(app, actor, taskId), resumed: false };
    }
    if (rule === 'resume') {
      message = await resumeWithMessage(app, actor, task, input);
      resumed = message !== undefined;
    } else {
      message = await queueMessage(app, actor, task, input, accepts);
    }
    if (message) return { queued: true, messageId: message.id, task: await getTask(app, actor, taskId), resumed };
    if (round >= sendRounds) {
      throw new HiatusError('conflict', `task ${taskId} kept changing while the message was being sent; send again`);
    }
  }
}

/** Whether a state's send rule takes a message into the inbox. */
function queueableRule(rule: SendRule, resumeIfPaused: boolean): boolean {
  return rule === 'deliver' || (rule === 'wait' && resumeIfPaused);
}

/**
 * Posts the message to an active task's agent when it can go now: nothing queued before it, and
 * the agent `stable`, and no pause under way. False when it must be queued instead; an agent that
 * cannot be asked fails the send (nothing stored). A delivered message stays in the inbox as
 * delivered (no event: the send's answer says so), and resets the task's idle clock.
 */
async function deliverNow(
  app: Pick<App, 'agent' | 'db' | 'liveHistories' | 'settings'>,
  actor: Actor,
  task: Task,
  input: string,
): Promise<boolean> {
  // Held as the inbox's deliveries are, so a pause waits for it (see lifecycle/pause-hold.ts).
  const claimed = await claimDirectDelivery(app.db, {
    taskId: task.id,
    workspaceId: task.workspaceId,
    content: input,
    senderId: initiatorId(actor),
    leaseMs: deliveryLeaseMs(app),
  });
  if (!claimed) return false;
  const agent = app.agent(task.agentUrl, agentTrust(task));
  try {
    if ((await agent.status()) !== 'stable') {
      await dropDirectDelivery(app.db, claimed.id);
      return false;
    }
    if (!(await agent.sendMessage(input))) {
      throw new HiatusError('agent_bad_response', `the agent of task ${task.id} did not take the message`);
    }
  } catch (error) {
    await dropDirectDelivery(app.db, claimed.id);
    if (error instanceof AgentError) throw agentFailure(error);
    throw error;
  }
  await app.db.transaction().execute(async (trx) => {
    await markMessageDelivered(trx, claimed.id);
    await resetIdleClock(trx, task.id);
  });
  // The live log shows the message from the next read on, not a few seconds later.
  app.liveHistories.forget(task.id, task.agentUrl);
  return true;
}

/**
 * Resumes the task and queues the message in the resume's own transaction: either both commit
 * or neither. Undefined when the resume is refused because the task changed (a concurrent send's
 * resume won): the caller reads it again and queues behind that resume.
 */
async function resumeWithMessage(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  task: Task,
  input: string,
): Promise<InboxMessage | undefined> {
  const started = performance.now();
  try {
    const { value } = await commitTaskChange(app, actor, {
      operation: 'resume',
      reason: 'task_resume',
      task,
      effect: async (trx, ref) => {
        // A resumed agent starts its idle clock afresh (as resumeTask does).
        await resetIdleClock(trx, ref.id);
        const message = await queueInTransaction(trx, actor, task, input, true);
        return { value: message, diff: { messageId: message.id } };
      },
    });
    app.events.emit('resume', { outcome: 'succeeded', durationMs: performance.now() - started });
    return value;
  } catch (error) {
    if (error instanceof HiatusError && error.code === 'conflict') return undefined;
    app.events.emit('resume', { outcome: 'failed', durationMs: performance.now() - started });
    throw error;
  }
}

function notActive(task: Task): HiatusError {
  const hint =
    task.status === 'paused' || task.status === 'pending' || task.status === 'initializing'
      ? '; pass resumeIfPaused to queue the message (and resume the task when it is paused)'
      : '';
  return new HiatusError('conflict', `cannot send to task ${task.id}: it is ${task.status}${hint}`);
}

/** Waits until the task reaches `wanted`; fails at once if it ends in error or is deleted. */
export async function waitForStatus(
  app: Pick<App, 'db'>,
  taskId: string,
  wanted: TaskStatus,
  timeoutMs: number,
): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await findTask(app.db, taskId);
    if (!task) throw taskNotFound(taskId);
    if (task.status === wanted) return task;
    if (task.status === 'error' || task.status === 'deleted') {
      throw new HiatusError('conflict', `task ${taskId} became ${task.status} while waiting for ${wanted}`);
    }
    if (Date.now() >= deadline) {
      throw new HiatusError(
        'timeout',
        `task ${taskId} did not become ${wanted} within ${timeoutMs} ms (it is ${task.status})`,
      );
    }
    await sleep(100);
  }
}
