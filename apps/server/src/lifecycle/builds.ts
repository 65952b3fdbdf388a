import type { App } from '../app.ts';
import { type BuildPage, listBuilds } from '../db/builds.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import type { BuildReason } from '../domain/lifecycle.ts';
import { getTask } from './tasks.ts';

/** A task's lifecycle history, newest first: every build with its transition, reason and job status. */
export async function listTaskBuilds(
  app: Pick<App, 'db' | 'reads'>,
  actor: Actor,
  taskId: string,
  options: { reason?: BuildReason; limit?: number; cursor?: number },
): Promise<BuildPage> {
  const task = await getTask(app, actor, taskId);
  return listBuilds(app.reads(), task.workspaceId, { ...options, limit: options.limit ?? defaults.listPageSize });
}
