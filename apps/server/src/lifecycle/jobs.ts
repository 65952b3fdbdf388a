import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import type { Build } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import {
  acquireJob,
  completeJob,
  failStaleJobs,
  findJobContext,
  heartbeatJob,
  type JobContext,
  type JobFilter,
  type JobRow,
} from '../db/jobs.ts';
import { findTasks, setAgentUrl, taskIdOfWorkspace } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { runningStatuses } from '../domain/lifecycle.ts';
import { nextBuildEvent } from './build-events.ts';

/** A build job a provisioner holds, with the task it is for (null for a workspace without one). */
export type BuildJob = { build: Build; taskId: string | null };

/** A job with everything a driver needs: the task, the template version, the last start's outputs. */
export type ProvisionerJob = BuildJob & JobContext;

export type AcquireOptions = JobFilter & {
  /** How long to wait for a matching job when none is pending (a long poll); 0 answers at once. */
  waitMs?: number;
};

/**
 * Takes the oldest pending build job matching the provisioner's drivers and templates; each job
 * goes to exactly one provisioner. With `waitMs`, waits for one: woken at once by jobs queued in
 * this process, and looking again every `provisionerPollMs` for those of other processes.
 */
export async function acquireBuildJob(
  app: App,
  provisionerId: string,
  options: AcquireOptions = {},
): Promise<ProvisionerJob | null> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    const build = await acquireJob(app.db, provisionerId, options);
    if (build) {
      const context = await findJobContext(app.db, build);
      const job = { build, taskId: context.task?.id ?? null, ...context };
      app.events.emit('build', { taskId: job.taskId, workspaceId: build.workspaceId, build });
      return job;
    }
    const left = deadline - Date.now();
    if (left <= 0) return null;
    await nextBuildEvent(
      app,
      (event) => event.build.jobStatus === 'pending',
      Math.min(left, defaults.provisionerPollMs),
    );
  }
}

/**
 * Which of `taskIds` may keep a running workspace, by their status: a provisioner that restarts
 * stops whatever else it finds. A task this database does not know is not its to stop (another
 * Hiatus may share the folder), so it is in the answer too.
 */
export async function tasksThatShouldRun(app: App, taskIds: readonly string[]): Promise<string[]> {
  const known = new Map((await findTasks(app.db, taskIds)).map((task) => [task.id, task.status]));
  return taskIds.filter((id) => {
    const status = known.get(id);
    return status === undefined || runningStatuses.includes(status);
  });
}

/** Records a provisioner's sign of life on a job it runs. */
export async function heartbeatBuildJob(app: App, buildId: string, provisionerId?: string): Promise<void> {
  if (!(await heartbeatJob(app.db, buildId, provisionerId))) throw notRunning(buildId);
}

/** Ends a running job: succeeded, or failed with the error text; audited with the change. */
export async function completeBuildJob(
  app: App,
  buildId: string,
  outcome: { error?: string; provisionerId?: string; actor?: Actor; outputs?: Record<string, unknown> } = {},
): Promise<Build> {
  const agentUrl = outcome.outputs?.agentUrl;
  if (agentUrl !== undefined && (typeof agentUrl !== 'string' || !/^https?:\/\/[^\s]+$/.test(agentUrl))) {
    throw new HiatusError('bad_input', 'outputs.agentUrl must be an http(s) URL');
  }
  const { build, taskId } = await app.db.transaction().execute(async (trx) => {
    const job = await completeJob(trx, buildId, outcome);
    if (!job) throw notRunning(buildId);
    const completed = await auditCompletion(trx, outcome.actor ?? systemActor, job);
    // The agent now answers where its start says: a task's agentUrl is its latest successful start's.
    if (completed.taskId && typeof agentUrl === 'string' && job.build.transition === 'start' && !outcome.error) {
      await setAgentUrl(trx, completed.taskId, agentUrl);
    }
    return completed;
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
