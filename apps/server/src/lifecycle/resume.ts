import type { Build } from '../db/builds.ts';
import type { Task } from '../db/tasks.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { assertAllowed } from './status.ts';
import { getTask } from './tasks.ts';
import { queueTransition } from './transition.ts';

/**
 * Resumes a paused task (or one whose stop failed): queues a start build with reason
 * `task_resume`. The snapshot stays readable until the next pause overwrites it.
 */
export async function resumeTask(lc: Lifecycle, actor: Actor, taskId: string): Promise<{ task: Task; build: Build }> {
  const started = performance.now();
  try {
    const result = await resume(lc, actor, taskId);
    lc.events.emit('resume', { outcome: 'succeeded', durationMs: performance.now() - started });
    return result;
  } catch (error) {
    lc.events.emit('resume', { outcome: 'failed', durationMs: performance.now() - started });
    throw error;
  }
}

async function resume(lc: Lifecycle, actor: Actor, taskId: string): Promise<{ task: Task; build: Build }> {
  const before = await getTask(lc, actor, taskId);
  assertAllowed('resume', before);
  const { build } = await queueTransition(lc, actor, before, 'resume', 'task_resume', async (trx) => {
    // A resumed agent starts its idle clock afresh.
    await trx.updateTable('tasks').set({ agent_idle_since: null }).where('id', '=', taskId).execute();
    return { value: undefined };
  });
  return { task: await getTask(lc, actor, taskId), build };
}
