import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from '../agentapi/client.ts';
import { type App, agentTrust } from '../app.ts';
import { findTask, type Task } from '../db/tasks.ts';
import type { Actor } from '../domain/actor.ts';
import { HiatusError, taskNotFound } from '../domain/errors.ts';
import { deriveState, type TaskStatus } from '../domain/lifecycle.ts';
import { meteredResume } from './metered.ts';
import { agentFailure } from './pause.ts';
import { getTask } from './tasks.ts';

/** `resumed`: this call queued the resume (concurrent sends share one, and only its caller's says so). */
export type SendResult = { task: Task; resumed: boolean };

/**
 * Forwards a user message to the task's agent. The task must be active and its agent stable.
 * With `resumeIfPaused`, a paused task is resumed first (and a starting one waited for), and the
 * message is sent once the task is active and its agent answers (within the configured wait).
 * What each state allows is the state table's `send` column.
 */
export async function sendToTask(
  app: App,
  actor: Actor,
  taskId: string,
  input: string,
  options: { resumeIfPaused?: boolean } = {},
): Promise<SendResult> {
  let task = await getTask(app, actor, taskId);
  const rule = deriveState(task.deletedAt, task.latestBuild).send;
  let resumed = false;
  if (rule !== 'deliver') {
    if (rule === 'refuse' || !options.resumeIfPaused) throw notActive(task);
    if (rule === 'resume') resumed = await resumeUnlessRaced(app, actor, taskId);
    task = await waitForStatus(app, taskId, 'active', app.settings.resumeWaitMs);
  }

  const agent = app.agent(task.agentUrl, agentTrust(task));
  // The agent of a start this call waited for (its own resume's or a concurrent one's) may take a moment.
  const deadline = Date.now() + (rule === 'deliver' ? 0 : app.settings.resumeWaitMs);
  for (;;) {
    try {
      const status = await agent.status();
      if (status !== 'stable') {
        throw new HiatusError('conflict', `the agent of task ${taskId} is busy (${status}); send when it is stable`);
      }
      if (!(await agent.sendMessage(input))) {
        throw new HiatusError('agent_bad_response', `the agent of task ${taskId} did not take the message`);
      }
      // The live log shows the message from the next read on, not a few seconds later.
      app.liveHistories.forget(taskId, task.agentUrl);
      return { task: await getTask(app, actor, taskId), resumed };
    } catch (error) {
      if (!(error instanceof AgentError)) throw error;
      // A freshly resumed workspace takes a moment to bring its agent up.
      if (error.failure !== 'unreachable' || Date.now() >= deadline) throw agentFailure(error);
      await sleep(250);
    }
  }
}

/**
 * Resumes the task for a send; false when a concurrent call's resume got there first (its start is
 * then under way or done, and this send waits for it like the winner's does). Any other refusal stands.
 */
async function resumeUnlessRaced(app: App, actor: Actor, taskId: string): Promise<boolean> {
  try {
    await meteredResume(app, actor, taskId);
    return true;
  } catch (error) {
    if (!(error instanceof HiatusError && error.code === 'conflict')) throw error;
    const now = await getTask(app, actor, taskId);
    const rule = deriveState(now.deletedAt, now.latestBuild).send;
    if (rule === 'wait' || rule === 'deliver') return false;
    throw error;
  }
}

function notActive(task: Task): HiatusError {
  const hint = task.status === 'paused' ? '; pass resumeIfPaused to resume it first' : '';
  return new HiatusError('conflict', `cannot send to task ${task.id}: it is ${task.status}${hint}`);
}

/** Waits until the task reaches `wanted`; fails at once if it ends in error or is deleted. */
export async function waitForStatus(app: App, taskId: string, wanted: TaskStatus, timeoutMs: number): Promise<Task> {
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
