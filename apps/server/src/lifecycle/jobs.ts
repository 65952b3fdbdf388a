import { sql } from 'kysely';
import { type Build, toBuild } from '../db/builds.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError } from './errors.ts';

/** A build job a provisioner holds, with the task it is for (null for a workspace without one). */
export type BuildJob = { build: Build; taskId: string | null };

/**
 * Takes the oldest pending build job for `provisionerId`. `FOR UPDATE SKIP LOCKED` lets many
 * provisioners poll at once: each job goes to exactly one of them.
 */
export async function acquireBuildJob(lc: Lifecycle, provisionerId: string): Promise<BuildJob | null> {
  const row = await lc.db
    .updateTable('workspace_builds')
    .set({ job_status: 'running', started_at: sql`NOW()`, heartbeat_at: sql`NOW()`, provisioner_id: provisionerId })
    .where('id', '=', (eb) =>
      eb
        .selectFrom('workspace_builds')
        .select('id')
        .where('job_status', '=', 'pending')
        .orderBy('created_at')
        .limit(1)
        .forUpdate()
        .skipLocked(),
    )
    .where('job_status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
  if (!row) return null;
  const job = { build: toBuild(row), taskId: await taskOfWorkspace(lc, row.workspace_id) };
  lc.events.emit('build', { taskId: job.taskId, workspaceId: row.workspace_id, build: job.build });
  return job;
}

/** Records a provisioner's sign of life on a job it runs. */
export async function heartbeatBuildJob(lc: Lifecycle, buildId: string, provisionerId?: string): Promise<void> {
  let query = lc.db
    .updateTable('workspace_builds')
    .set({ heartbeat_at: sql`NOW()` })
    .where('id', '=', buildId)
    .where('job_status', '=', 'running');
  if (provisionerId) query = query.where('provisioner_id', '=', provisionerId);
  const result = await query.executeTakeFirst();
  if (result.numUpdatedRows === 0n) throw notRunning(buildId);
}

/** Ends a running job: succeeded, or failed with the error text. */
export async function completeBuildJob(
  lc: Lifecycle,
  buildId: string,
  outcome: { error?: string; provisionerId?: string } = {},
): Promise<Build> {
  const failed = outcome.error !== undefined;
  let query = lc.db
    .updateTable('workspace_builds')
    .set({
      job_status: failed ? 'failed' : 'succeeded',
      error: failed ? outcome.error || 'failed without a message' : null,
      completed_at: sql`NOW()`,
    })
    .where('id', '=', buildId)
    .where('job_status', '=', 'running');
  if (outcome.provisionerId) query = query.where('provisioner_id', '=', outcome.provisionerId);
  const row = await query.returningAll().executeTakeFirst();
  if (!row) throw notRunning(buildId);
  const build = toBuild(row);
  lc.events.emit('build', {
    taskId: await taskOfWorkspace(lc, row.workspace_id),
    workspaceId: row.workspace_id,
    build,
  });
  return build;
}

/** Fails running jobs whose provisioner has been silent longer than `staleAfterMs`; returns them. */
export async function failStaleBuildJobs(lc: Lifecycle, staleAfterMs: number): Promise<Build[]> {
  const rows = await lc.db
    .updateTable('workspace_builds')
    .set({
      job_status: 'failed',
      error: sql`'provisioner ' || provisioner_id || ' stopped sending heartbeats'`,
      completed_at: sql`NOW()`,
    })
    .where('job_status', '=', 'running')
    .where('heartbeat_at', '<', sql<Date>`NOW() - make_interval(secs => ${staleAfterMs / 1000})`)
    .returningAll()
    .execute();
  const builds = rows.map(toBuild);
  for (const build of builds) {
    lc.events.emit('build', {
      taskId: await taskOfWorkspace(lc, build.workspaceId),
      workspaceId: build.workspaceId,
      build,
    });
  }
  return builds;
}

async function taskOfWorkspace(lc: Lifecycle, workspaceId: string): Promise<string | null> {
  const task = await lc.db.selectFrom('tasks').where('workspace_id', '=', workspaceId).select('id').executeTakeFirst();
  return task?.id ?? null;
}

function notRunning(buildId: string): LifecycleError {
  return new LifecycleError('conflict', `build ${buildId} is not a running job held by this provisioner`);
}
