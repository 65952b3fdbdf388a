import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import { resetIdleClock, type Task } from '../db/tasks.ts';
import type { Actor } from '../domain/actor.ts';
import { assertAllowed } from '../domain/lifecycle.ts';
import { getTask } from './tasks.ts';
import { commitTaskChange } from './transition.ts';

/**
 * Resumes a paused task (or one whose stop failed): queues a start build with reason
 * `task_resume`. The snapshot stays readable until the next pause overwrites it.
 */
export async function resumeTask(app: App, actor: Actor, taskId: string): Promise<{ task: Task; build: Build }> {
  const before = await getTask(app, actor, taskId);
  assertAllowed('resume', before);
  const { build } = await commitTaskChange(app, actor, {
    operation: 'resume',
    reason: 'task_resume',
    task: before,
    effect: async (trx) => {
      // A resumed agent starts its idle clock afresh.
      await resetIdleClock(trx, taskId);
      return { value: undefined };
    },
  });
  return { task: await getTask(app, actor, taskId), build };
}
