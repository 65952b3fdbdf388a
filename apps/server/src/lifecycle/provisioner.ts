import { type BuildSpec, type Driver, driverFor } from '@hiatus/provisioner';
import type { App } from '../app.ts';
import type { Logger } from '../logger.ts';
import {
  acquireBuildJob,
  completeBuildJob,
  heartbeatBuildJob,
  type ProvisionerJob,
  tasksThatShouldRun,
} from './jobs.ts';

export type BuiltinProvisionerOptions = {
  /** How often to look for jobs besides being woken by this process's own builds. */
  pollIntervalMs: number;
  /** A running job with no heartbeat for this long is failed (by the stale-job loop): beat well within it. */
  staleAfterMs: number;
  /** Where the drivers keep their state: pid files, the tasks' working directories. */
  dataDir: string;
  log: Logger;
};

/**
 * The provisioner built into the server. Jobs of external workspaces complete at once; jobs of a
 * template's workspace run its driver (really starting or stopping the agent), with heartbeats,
 * several at a time. On start it reconciles: whatever a driver left running for a task that
 * should not run is stopped. Returns a stop function that waits for the jobs in flight.
 */
export function startBuiltinProvisioner(app: App, options: BuiltinProvisionerOptions): () => Promise<void> {
  const id = `builtin-${process.pid}`;
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;

  const drain = async () => {
    for (let job = await acquireBuildJob(app, id); job && !stopped; job = await acquireBuildJob(app, id)) {
      if (!job.template) {
        await completeBuildJob(app, job.build.id, { provisionerId: id });
        continue;
      }
      const run = runDriverJob(app, id, job, options).finally(() => inFlight.delete(run));
      inFlight.add(run);
    }
  };
  const wake = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = drain()
      .catch((error: unknown) => options.log.warn({ err: error }, 'built-in provisioner: pass failed'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          wake();
        }
      });
  };
  const onBuild = ({ build }: { build: { jobStatus: string } }) => {
    if (build.jobStatus === 'pending') wake();
  };

  app.events.on('build', onBuild);
  const timer = setInterval(wake, options.pollIntervalMs);
  timer.unref();
  void reconcileDrivers(app, options).finally(wake);
  return async () => {
    stopped = true;
    clearInterval(timer);
    app.events.off('build', onBuild);
    await running;
    await Promise.all(inFlight);
  };
}

/** Runs one job's driver with heartbeats, then reports its outputs or its error. */
async function runDriverJob(
  app: App,
  provisionerId: string,
  job: ProvisionerJob,
  options: BuiltinProvisionerOptions,
): Promise<void> {
  const abort = new AbortController();
  const beat = setInterval(
    () => void heartbeatBuildJob(app, job.build.id, provisionerId).catch(() => abort.abort()), // no longer ours
    Math.max(Math.floor(options.staleAfterMs / 3), 50),
  );
  try {
    const outputs = await driverFor(job.template!.driver).run(buildSpec(job), {
      dataDir: options.dataDir,
      signal: abort.signal,
      log: (msg, fields) => options.log.info({ ...fields, buildId: job.build.id }, msg),
    });
    await completeBuildJob(app, job.build.id, { provisionerId, outputs });
  } catch (error) {
    options.log.warn({ buildId: job.build.id, err: error }, 'build failed');
    await completeBuildJob(app, job.build.id, { provisionerId, error: (error as Error).message }).catch(
      (completeError: unknown) => options.log.warn({ err: completeError }, 'could not report a failed build'),
    );
  } finally {
    clearInterval(beat);
  }
}

/** A job as a driver sees it. */
export function buildSpec(job: ProvisionerJob): BuildSpec {
  return {
    buildId: job.build.id,
    taskId: job.task?.id ?? job.build.workspaceId,
    workspaceId: job.build.workspaceId,
    transition: job.build.transition,
    reason: job.build.reason,
    prompt: job.task?.prompt ?? '',
    parameters: job.task?.parameters ?? {},
    settings: job.template?.settings ?? {},
    previousOutputs: job.previousOutputs,
  };
}

/** Stops what the drivers left running (a crash, a restart) for tasks whose status says they should not run. */
async function reconcileDrivers(app: App, options: BuiltinProvisionerOptions): Promise<void> {
  for (const driver of ['process', 'command'].map(driverFor) as Driver[]) {
    try {
      const stopped = await driver.reconcile?.(async (taskId) => (await tasksThatShouldRun(app, [taskId])).length > 0, {
        dataDir: options.dataDir,
      });
      if (stopped?.length) options.log.info({ driver: driver.name, stopped }, 'reconcile stopped leftover workspaces');
    } catch (error) {
      options.log.warn({ driver: driver.name, err: error }, 'reconcile failed');
    }
  }
}
