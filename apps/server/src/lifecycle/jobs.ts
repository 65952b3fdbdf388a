import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import type { Build } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { acquireJob, completeJob, failStaleJobs, heartbeatJob, type JobRow } from '../db/jobs.ts';
import { taskIdOfWorkspace } from '../db/tasks.ts';
import { type Actor, systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';

/** A build job a provisioner holds, with the task it is for (null for a workspace without one). */
export type BuildJob = { build: Build; taskId: string | null };

/** Takes the oldest pending build job for `provisionerId`; each job goes to exactly one provisioner. */
export async function acquireBuildJob(app: App, provisionerId: string): Promise<BuildJob | null> {
  const build = await acquireJob(app.db, provisionerId);
  if (!build) return null;
  const job = { build, taskId: await taskIdOfWorkspace(app.db, build.workspaceId) };
  app.events.emit('build', { taskId: job.taskId, workspaceId: build.workspaceId, build });
  return job;
}

/** Records a provisioner's sign of life on a job it runs. */
export async function heartbeatBuildJob(app: App, buildId: string, provisionerId?: string): Promise<void> {
  if (!(await heartbeatJob(app.db, buildId, provisionerId))) throw notRunning(buildId);
}

/** Ends a running job: succeeded, or failed with the error text; audited with the change. */
export async function completeBuildJob(
  app: App,
  buildId: string,
  outcome: { error?: string; provisionerId?: string; actor?: Actor } = {},
): Promise<Build> {
  const { build, taskId } = await app.db.transaction().execute(async (trx) => {
    const job = await completeJob(trx, buildId, outcome);
    if (!job) throw notRunning(buildId);
    return auditCompletion(trx, outcome.actor ?? systemActor, job);
  });
  app.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return build;
}

/** Fails running jobs whose provisioner has been silent longer than `staleAfterMs`; returns them. */
export async function failStaleBuildJobs(app: App, staleAfterMs: number): Promise<Build[]> {
  const failed = await app.db.transaction().execute(async (trx) => {
    const jobs: BuildJob[] = [];
    for (const job of await failStaleJobs(trx, staleAfterMs)) jobs.push(await auditCompletion(trx, systemActor, job));
    return jobs;
  });
  for (const { build, taskId } of failed) app.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return failed.map((f) => f.build);
}

/** The audit record of a job's end, in its transaction; returns the job with its task. */
async function auditCompletion(trx: Db, actor: Actor, { build, provisionerId }: JobRow): Promise<BuildJob> {
  await audit(trx, actor, {
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
  return { build, taskId: await taskIdOfWorkspace(trx, build.workspaceId) };
}

function notRunning(buildId: string): HiatusError {
  return new HiatusError('conflict', `build ${buildId} is not a running job held by this provisioner`);
}
