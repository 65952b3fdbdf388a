import { sql } from 'kysely';
import { type Build, toBuild } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { type Actor, systemActor } from './actor.ts';
import { audit, changed } from './audit.ts';
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
  const job = { build: toBuild(row), taskId: await taskOfWorkspace(lc.db, row.workspace_id) };
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

/** Ends a running job: succeeded, or failed with the error text; audited with the change. */
export async function completeBuildJob(
  lc: Lifecycle,
  buildId: string,
  outcome: { error?: string; provisionerId?: string; actor?: Actor } = {},
): Promise<Build> {
  const failed = outcome.error !== undefined;
  const { build, taskId } = await lc.db.transaction().execute(async (trx) => {
    let query = trx
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
    await auditCompletion(trx, outcome.actor ?? systemActor, build, row.provisioner_id);
    return { build, taskId: await taskOfWorkspace(trx, row.workspace_id) };
  });
  lc.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return build;
}

/** Fails running jobs whose provisioner has been silent longer than `staleAfterMs`; returns them. */
export async function failStaleBuildJobs(lc: Lifecycle, staleAfterMs: number): Promise<Build[]> {
  const failed = await lc.db.transaction().execute(async (trx) => {
    const rows = await trx
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
    const failed: Array<{ build: Build; taskId: string | null }> = [];
    for (const row of rows) {
      const build = toBuild(row);
      await auditCompletion(trx, systemActor, build, row.provisioner_id);
      failed.push({ build, taskId: await taskOfWorkspace(trx, row.workspace_id) });
    }
    return failed;
  });
  for (const { build, taskId } of failed) lc.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return failed.map((f) => f.build);
}

function auditCompletion(trx: Db, actor: Actor, build: Build, provisionerId: string | null): Promise<void> {
  return audit(trx, actor, {
    action: build.jobStatus === 'failed' ? 'build.failed' : 'build.succeeded',
    resourceType: 'build',
    resourceId: build.id,
    buildReason: build.reason,
    diff: {
      jobStatus: changed('running', build.jobStatus),
      transition: build.transition,
      workspaceId: build.workspaceId,
      buildNumber: build.buildNumber,
      provisionerId,
      ...(build.error === null ? {} : { error: build.error }),
    },
  });
}

async function taskOfWorkspace(db: Db, workspaceId: string): Promise<string | null> {
  const task = await db.selectFrom('tasks').where('workspace_id', '=', workspaceId).select('id').executeTakeFirst();
  return task?.id ?? null;
}

function notRunning(buildId: string): LifecycleError {
  return new LifecycleError('conflict', `build ${buildId} is not a running job held by this provisioner`);
}
