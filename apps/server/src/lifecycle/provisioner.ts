import { agentSeparationWarning, type Driver, drivers, performJob } from '@hiatus/provisioner';
import type { App } from '../app.ts';
import { defaults } from '../defaults.ts';
import { HiatusError } from '../domain/errors.ts';
import type { Logger } from '../logger.ts';
import {
  acquireBuildJob,
  completeBuildJob,
  heartbeatBuildJob,
  jobPreviousConversation,
  type ProvisionerJob,
  tasksThatShouldRun,
} from './jobs.ts';
import { noteProvisioner } from './provisioners.ts';

export type BuiltinProvisionerOptions = {
  /** How often to look for jobs besides being woken by this process's own builds. */
  pollIntervalMs: number;
  /** A running job with no heartbeat for this long is failed (by the stale-job loop): beat well within it. */
  staleAfterMs: number;
  /** Where the drivers keep their state: pid files, the tasks' working directories. */
  dataDir: string;
  /** Its tags (HIATUS_BUILTIN_PROVISIONER_TAGS): it takes untagged templates' jobs, and those whose tags are all among these. */
  tags?: Readonly<Record<string, string>>;
  log: Logger;
};

/**
 * The provisioner built into the server. Jobs of external workspaces complete at once; jobs of a
 * template's workspace run its driver (really starting or stopping the agent), with heartbeats,
 * several at a time. On start it reconciles: whatever a driver left running for a task that
 * should not run is stopped. Returns a stop function that waits for the jobs in flight.
 */
export function startBuiltinProvisioner(
  app: Pick<App, 'db' | 'events' | 'settings' | 'driverAgentUrlRefusal'>,
  options: BuiltinProvisionerOptions,
): () => Promise<void> {
  const id = `builtin-${process.pid}`;
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;

  const tags = { ...options.tags };
  let notedAt = 0;
  const take = () => acquireBuildJob(app, id, { tags });
  const drain = async () => {
    // Tagged, it counts as connected for its tags (see unservedJobs); noted well within that window.
    if (Object.keys(tags).length > 0 && Date.now() - notedAt > defaults.provisionerSeenWithinMs / 4) {
      notedAt = Date.now();
      await noteProvisioner(app, { keyId: null, name: id }, tags);
    }
    for (let job = await take(); job && !stopped; job = await take()) {
      if (!job.template) {
        await completeBuildJob(app, job.build.id, { holder: id });
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

  // This process holds the database URL and the admin key: an agent of its own user can read them.
  void agentSeparationWarning(options.dataDir).then((why) => {
    if (why) {
      options.log.warn(
        `built-in provisioner: ${why}. Run agents with hiatus-provisioner instead (HIATUS_BUILTIN_PROVISIONER=false here), which holds only its provisioner key, or run this server as root with HIATUS_AGENT_USER`,
      );
    }
  });
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

/** Runs one job's driver (the same way the daemon does) with heartbeats, then reports how it ended. */
async function runDriverJob(
  app: Pick<App, 'db' | 'events' | 'settings' | 'driverAgentUrlRefusal'>,
  provisionerId: string,
  job: ProvisionerJob,
  options: BuiltinProvisionerOptions,
): Promise<void> {
  const lost = new AbortController();
  const beat = setInterval(
    () => void heartbeatBuildJob(app, job.build.id, provisionerId, job.attempt).catch(() => lost.abort()), // no longer ours
    Math.max(Math.floor(options.staleAfterMs / 3), 50),
  );
  try {
    const outcome = await performJob(
      job,
      {
        dataDir: options.dataDir,
        signal: lost.signal,
        log: (msg, fields) => options.log.info({ ...fields, buildId: job.build.id }, msg),
      },
      // A resume's previous conversation, read from the services as the daemon reads it from the API.
      { previousConversation: () => jobPreviousConversation(app, job.build.id, provisionerId) },
    );
    if ('error' in outcome) options.log.warn({ buildId: job.build.id, error: outcome.error }, 'build failed');
    const claim = { holder: provisionerId, attempt: job.attempt };
    await completeBuildJob(app, job.build.id, { ...claim, ...outcome }).catch(async (error: unknown) => {
      // Outputs the server refuses (an agentUrl that is no URL, or outside HIATUS_DRIVER_AGENT_NETWORKS) fail the build instead, as the daemon does.
      if (!(error instanceof HiatusError && error.code === 'bad_input')) throw error;
      await completeBuildJob(app, job.build.id, {
        ...claim,
        error: `the outputs were refused: ${error.message}`,
      });
    });
  } catch (error) {
    options.log.warn({ buildId: job.build.id, err: error }, 'could not report a build');
  } finally {
    clearInterval(beat);
  }
}

/** Stops what the drivers left running (a crash, a restart) for tasks whose status says they should not run. */
async function reconcileDrivers(app: Pick<App, 'db'>, options: BuiltinProvisionerOptions): Promise<void> {
  for (const driver of Object.values(drivers) as Driver[]) {
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
