import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import { resetIdleClock, type Task } from '../db/tasks.ts';
import type { Actor } from '../domain/actor.ts';
import { changeVisibleTask, type PolicyNote } from './transition.ts';

/**
 * Resumes a paused task (or one whose stop failed): queues a start build with reason
 * `task_resume`. The snapshot stays readable until the next pause overwrites it.
 */
export async function resumeTask(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  taskId: string,
  /** The policy the system resumes for (a schedule), named in the audit record. */
  policy?: PolicyNote,
): Promise<{ task: Task; build: Build }> {
  const { task, build } = await changeVisibleTask(
    app,
    actor,
    taskId,
    'resume',
    'task_resume',
    async (trx, _task, build) => {
      await policy?.within?.(trx, build);
      // A resumed agent starts its idle clock afresh.
      await resetIdleClock(trx, taskId);
      return { value: undefined, diff: policy?.diff };
    },
  );
  return { task, build };
}
