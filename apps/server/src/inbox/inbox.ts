import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import { audit } from '../audit/audit.ts';
import { lockWorkspace } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { insertEvents } from '../db/events.ts';
import {
  cancelQueuedMessage,
  claimNextMessage,
  countQueuedMessages,
  findMessage,
  type InboxMessage,
  insertQueuedMessage,
  markMessageDelivered,
  releaseMessage,
  tasksWithDeliverableMessages,
} from '../db/inbox.ts';
import { findTask, resetIdleClock, type Task } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, initiatorId } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { HiatusError, taskNotFound } from '../domain/errors.ts';
import { getTask } from '../lifecycle/access.ts';
import { ChangeWaiter } from '../lifecycle/changes.ts';
import { deliveryLeaseMs } from '../lifecycle/pause-hold.ts';
import { forEachLimited } from '../limits/concurrency.ts';
import type { Logger } from '../logger.ts';
import type { StopLoop } from '../loops.ts';

/**
 * A task's inbox: messages sent while its agent could not take them (the task paused or starting,
 * its agent busy, or earlier messages still waiting), delivered once the task is active and its
 * agent `stable`, in order, exactly once but for one window: a process that dies after the
 * agent took a message and before the delivered marker commits leaves it queued, and it goes
 * again once its lease runs out; so does a message whose POST the agent took but whose answer was
 * lost (a timeout). AgentAPI has no idempotency key to close that window.
 */

/**
 * Stores `content` at the end of the task's inbox in `trx` and records `task.message_queued`.
 * The caller holds the task's workspace lock (a lifecycle change does), so messages queued one
 * after the other are delivered in that order.
 */
export async function queueInTransaction(
  trx: Db,
  actor: Actor,
  task: { id: string; ownerId: string },
  content: string,
  resumed: boolean,
): Promise<InboxMessage & { eventId: string | undefined }> {
  const waiting = await countQueuedMessages(trx, task.id);
  if (waiting >= defaults.maxQueuedMessagesPerTask) {
    // The caller's own limit, as a rate is: it may send again once some have gone.
    throw new HiatusError(
      'rate_limited',
      `task ${task.id} already has ${waiting} messages waiting to be delivered; cancel some or send when they have gone`,
    );
  }
  const message = await insertQueuedMessage(trx, { taskId: task.id, content, senderId: initiatorId(actor) });
  const [event] = await insertEvents(trx, [
    {
      type: 'task.message_queued',
      taskId: task.id,
      ownerId: task.ownerId,
      payload: { messageId: message.id, resumed },
    },
  ]);
  return { ...message, eventId: event?.id };
}

/**
 * Queues a message for a task as long as `accept` says its state (read under the workspace lock)
 * takes one; answers undefined, storing nothing, when it does not.
 */
export async function queueMessage(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  task: { id: string; workspaceId: string },
  content: string,
  accept: (now: Task) => boolean,
): Promise<InboxMessage | undefined> {
  const message = await app.db.transaction().execute(async (trx) => {
    await lockWorkspace(trx, task.workspaceId);
    const now = await findTask(trx, task.id);
    if (!now) throw taskNotFound(task.id);
    if (!accept(now)) return undefined;
    return queueInTransaction(trx, actor, now, content, false);
  });
  if (message) app.events.emit('change', { eventId: message.eventId, taskId: task.id, workspaceId: task.workspaceId });
  return message;
}

/**
 * Cancels a queued message of a task the actor may see: it never goes. A delivered or cancelled
 * message, or one being delivered at this moment, answers `conflict`; audited as
 * `task.cancel_message` and announced as `task.message_cancelled`.
 */
export async function cancelMessage(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  messageId: string,
): Promise<{ messageId: string; status: 'cancelled'; cancelledAt: Date }> {
  const task = await getTask(app, actor, taskId);
  const cancelled = await app.db.transaction().execute(async (trx) => {
    const outcome = await cancelQueuedMessage(trx, task.id, messageId);
    if (!outcome) throw new HiatusError('not_found', `task ${taskId} has no message ${messageId}`);
    if ('refused' in outcome) {
      const why = outcome.inFlight ? 'being delivered to the agent now' : `already ${outcome.refused.status}`;
      throw new HiatusError('conflict', `cannot cancel message ${messageId}: it is ${why}`);
    }
    await audit(trx, actor, {
      action: 'task.cancel_message',
      resourceType: 'task',
      resourceId: task.id,
      diff: { messageId, status: { from: 'queued', to: 'cancelled' } },
    });
    const [event] = await insertEvents(trx, [
      { type: 'task.message_cancelled', taskId: task.id, ownerId: task.ownerId, payload: { messageId } },
    ]);
    return { ...outcome.cancelled, eventId: event?.id };
  });
  app.events.emit('change', { eventId: cancelled.eventId, taskId: task.id, workspaceId: task.workspaceId });
  return { messageId: cancelled.id, status: 'cancelled', cancelledAt: cancelled.cancelledAt! };
}

/** One message sent to the task through Hiatus, whole, whatever became of it; `not_found` when it has none such. */
export async function getMessage(app: Pick<App, 'db'>, actor: Actor, taskId: string, messageId: string) {
  const task = await getTask(app, actor, taskId);
  const message = await findMessage(app.db, task.id, messageId);
  if (!message) throw new HiatusError('not_found', `task ${taskId} has no message ${messageId}`);
  const { id, status, content, queuedAt, deliveredAt, cancelledAt, attempts, lastError } = message;
  return { messageId: id, status, content, queuedAt, deliveredAt, cancelledAt, attempts, lastError };
}

/**
 * Delivers the task's queued messages, oldest first, while its agent takes them: each is claimed
 * (none while another process holds the task's head), the agent is asked for its status and,
 * when `stable`, sent the message; the delivered marker (with `task.message_delivered`, and the
 * idle clock reset: a delivery is activity) commits before the next is claimed. A busy, absent or
 * refusing agent gives the message back for a later pass. Returns how many went.
 */
export async function deliverInbox(
  app: Pick<App, 'agent' | 'db' | 'events' | 'liveHistories' | 'settings'>,
  taskId: string,
): Promise<number> {
  let delivered = 0;
  for (;;) {
    const task = await findTask(app.db, taskId);
    if (task?.status !== 'active') return delivered;
    const message = await claimNextMessage(app.db, taskId, deliveryLeaseMs(app));
    if (!message) return delivered;
    const agent = app.agent(task.agentUrl, agentTrust(task));
    let attempted = false;
    try {
      const status = await agent.status();
      if (status !== 'stable') {
        await releaseMessage(app.db, message.id, { attempted: false, error: null });
        return delivered;
      }
      attempted = true;
      if (!(await agent.sendMessage(message.content))) {
        await releaseMessage(app.db, message.id, { attempted, error: 'the agent did not take the message' });
        return delivered;
      }
    } catch (error) {
      if (!(error instanceof AgentError)) {
        await releaseMessage(app.db, message.id, { attempted, error: 'delivery failed in Hiatus' }).catch(
          () => undefined,
        );
        throw error;
      }
      await releaseMessage(app.db, message.id, { attempted, error: error.message });
      return delivered;
    }
    // The window: a crash from here until the marker commits delivers the message again later.
    await recordDelivery(app, task, message.id);
    delivered++;
  }
}

async function recordDelivery(
  app: Pick<App, 'db' | 'events' | 'liveHistories'>,
  task: Task,
  messageId: string,
): Promise<void> {
  const eventId = await app.db.transaction().execute(async (trx) => {
    const marked = await markMessageDelivered(trx, messageId);
    if (!marked) return undefined;
    await resetIdleClock(trx, task.id);
    const [event] = await insertEvents(trx, [
      {
        type: 'task.message_delivered',
        taskId: task.id,
        ownerId: task.ownerId,
        payload: { messageId, attempts: marked.attempts },
      },
    ]);
    return event?.id;
  });
  // The live log shows the message from the next read on.
  app.liveHistories.forget(task.id, task.agentUrl);
  app.events.emit('change', { eventId, taskId: task.id, workspaceId: task.workspaceId });
}

export type InboxDeliveryOptions = {
  /** How often to look when nothing wakes the loop (a busy agent turning stable announces nothing). */
  pollMs: number;
  /** Tasks whose inboxes one process delivers at once. */
  concurrency: number;
  log: Logger;
};

/**
 * The inbox delivery loop of a server process: every active task with a deliverable message gets
 * `deliverInbox`. Woken at once by any committed change (a message queued, a start that
 * succeeded: here or, through notifications, in another process), else every `pollMs`. Every
 * process may run it: the inbox lock and the leases let one deliver each message.
 */
export function startInboxDelivery(
  app: Pick<App, 'agent' | 'db' | 'events' | 'liveHistories' | 'settings'>,
  options: InboxDeliveryOptions,
): StopLoop {
  const stop = new AbortController();
  const waiter = new ChangeWaiter(app);
  const loop = (async () => {
    while (!stop.signal.aborted) {
      const passStarted = Date.now();
      try {
        const taskIds = await tasksWithDeliverableMessages(app.db, defaults.inboxTasksPerPass);
        await forEachLimited(taskIds, options.concurrency, async (taskId) => {
          try {
            await deliverInbox(app, taskId);
          } catch (error) {
            if (!stop.signal.aborted) options.log.warn({ err: error, taskId }, 'inbox delivery failed');
          }
        });
      } catch (error) {
        if (stop.signal.aborted) break;
        options.log.warn({ err: error }, 'inbox delivery pass failed');
      }
      await waiter.wait(options.pollMs, stop.signal);
      // Under a storm of changes, one look every `minGapMs` is enough: the wakes in between are one.
      const gap = defaults.inboxMinGapMs - (Date.now() - passStarted);
      if (gap > 0) await sleep(gap, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  })().finally(() => waiter.close());
  return async () => {
    stop.abort();
    await loop;
  };
}
