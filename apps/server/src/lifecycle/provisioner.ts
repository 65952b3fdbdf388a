import type { App } from '../app.ts';
import type { Logger } from '../logger.ts';
import { acquireBuildJob, completeBuildJob, failStaleBuildJobs } from './jobs.ts';

export type BuiltinProvisionerOptions = {
  /** How often to look for jobs besides being woken by this process's own builds. */
  pollIntervalMs: number;
  /** A running job with no heartbeat for this long is failed. */
  staleAfterMs: number;
  log: Logger;
};

/**
 * The provisioner built into the server: it completes each build job at once, so the embedded
 * setup works end to end. It also fails jobs whose provisioner vanished. Returns a stop function.
 */
export function startBuiltinProvisioner(app: App, options: BuiltinProvisionerOptions): () => Promise<void> {
  const id = `builtin-${process.pid}`;
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;

  const drain = async () => {
    await failStaleBuildJobs(app, options.staleAfterMs);
    for (let job = await acquireBuildJob(app, id); job && !stopped; job = await acquireBuildJob(app, id)) {
      await completeBuildJob(app, job.build.id, { provisionerId: id });
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
  wake();
  return async () => {
    stopped = true;
    clearInterval(timer);
    app.events.off('build', onBuild);
    await running;
  };
}
