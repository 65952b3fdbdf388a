import { AgentError } from '../agentapi/client.ts';
import { findTask, type Task } from '../db/tasks.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError, taskNotFound } from './errors.ts';
import { agentFailure } from './pause.ts';
import { resumeTask } from './resume.ts';
import type { TaskStatus } from './status.ts';
import { getTask } from './tasks.ts';

export type SendResult = { task: Task; resumed: boolean };

/**
 * Forwards a user message to the task's agent. The task must be active and its agent stable.
 * With `resumeIfPaused`, a paused task is resumed first, and the message is sent once the task is
 * active and its agent answers (within the configured wait).
 */
export async function sendToTask(
  lc: Lifecycle,
  actor: Actor,
  taskId: string,
  input: string,
  options: { resumeIfPaused?: boolean } = {},
): Promise<SendResult> {
  let task = await getTask(lc, actor, taskId);
  let resumed = false;
  if (task.status !== 'active' && options.resumeIfPaused && (task.status === 'paused' || task.status === 'error')) {
    await resumeTask(lc, actor, taskId);
    resumed = true;
  }
  if (resumed || ['pending', 'initializing'].includes(task.status)) {
    if (!resumed && !options.resumeIfPaused) throw notActive(task);
    task = await waitForStatus(lc, taskId, 'active', lc.settings.resumeWaitMs);
  }
  if (task.status !== 'active') throw notActive(task);

  const agent = lc.agent(task.agentUrl);
  const deadline = Date.now() + (resumed ? lc.settings.resumeWaitMs : 0);
  for (;;) {
    try {
      const status = await agent.status();
      if (status !== 'stable') {
        throw new LifecycleError('conflict', `the agent of task ${taskId} is busy (${status}); send when it is stable`);
      }
      if (!(await agent.sendMessage(input))) {
        throw new LifecycleError('agent_bad_response', `the agent of task ${taskId} did not take the message`);
      }
      return { task: await getTask(lc, actor, taskId), resumed };
    } catch (error) {
      if (!(error instanceof AgentError)) throw error;
      // A freshly resumed workspace takes a moment to bring its agent up.
      if (error.failure !== 'unreachable' || Date.now() >= deadline) throw agentFailure(error);
      await sleep(250);
    }
  }
}

function notActive(task: Task): LifecycleError {
  const hint = task.status === 'paused' ? '; pass resumeIfPaused to resume it first' : '';
  return new LifecycleError('conflict', `cannot send to task ${task.id}: it is ${task.status}${hint}`);
}

/** Waits until the task reaches `wanted`; fails at once if it ends in error or is deleted. */
export async function waitForStatus(
  lc: Lifecycle,
  taskId: string,
  wanted: TaskStatus,
  timeoutMs: number,
): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await findTask(lc.db, taskId);
    if (!task) throw taskNotFound(taskId);
    if (task.status === wanted) return task;
    if (task.status === 'error' || task.status === 'deleted') {
      throw new LifecycleError('conflict', `task ${taskId} became ${task.status} while waiting for ${wanted}`);
    }
    if (Date.now() >= deadline) {
      throw new LifecycleError(
        'timeout',
        `task ${taskId} did not become ${wanted} within ${timeoutMs} ms (it is ${task.status})`,
      );
    }
    await sleep(100);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
