import { type BuildPage, listBuilds } from '../db/builds.ts';
import type { BuildReason } from '../db/schema.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { getTask } from './tasks.ts';

/** A task's lifecycle history, newest first: every build with its transition, reason and job status. */
export async function listTaskBuilds(
  lc: Lifecycle,
  actor: Actor,
  taskId: string,
  options: { reason?: BuildReason; limit?: number; cursor?: number },
): Promise<BuildPage> {
  const task = await getTask(lc, actor, taskId);
  return listBuilds(lc.db, task.workspaceId, { ...options, limit: options.limit ?? 50 });
}
