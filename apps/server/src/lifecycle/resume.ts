import { type Build, insertNextBuild, lockWorkspace } from '../db/builds.ts';
import { findTask, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from './actor.ts';
import { audit, changed } from './audit.ts';
import type { Lifecycle } from './context.ts';
import { taskNotFound } from './errors.ts';
import { assertAllowed } from './status.ts';
import { getTask } from './tasks.ts';

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
  const build = await lc.db.transaction().execute(async (trx) => {
    await lockWorkspace(trx, before.workspaceId);
    const task = await findTask(trx, taskId);
    if (!task) throw taskNotFound(taskId);
    assertAllowed('resume', task);
    // A resumed agent starts its idle clock afresh.
    await trx.updateTable('tasks').set({ agent_idle_since: null }).where('id', '=', taskId).execute();
    const build = await insertNextBuild(trx, {
      workspaceId: task.workspaceId,
      transition: 'start',
      reason: 'task_resume',
      initiatorId: initiatorId(actor),
    });
    await audit(trx, actor, {
      action: 'task.resume',
      resourceType: 'task',
      resourceId: taskId,
      buildReason: 'task_resume',
      diff: {
        status: changed(task.status, 'pending'),
        build: { id: build.id, number: build.buildNumber, transition: 'start' },
      },
    });
    return build;
  });
  lc.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return { task: await getTask(lc, actor, taskId), build };
}
