import type { Logger } from './log.ts';
import { performJob } from './perform.ts';
import {
  type BuildJob,
  callFailure,
  describeFailure,
  type JobOutcome,
  type ProvisionerApi,
} from './provisioner-api.ts';
import { GaveUp, retrying } from './retry.ts';

/** The driver name of a job without a template: a workspace Hiatus neither starts nor stops. */
export const externalDriver = 'external';

export type BuildJobContext = {
  api: ProvisionerApi;
  dataDir: string;
  heartbeatMs: number;
  log: Logger;
  /** Aborts when the daemon stops waiting for the server to take a job's report. */
  abandon: AbortSignal;
  /**
   * The run of this daemon's previous job of the same task, waited for (heartbeating meanwhile)
   * before the driver runs: a job the server took back from this daemon (it fell silent, then woke)
   * and handed back to it as a retry must not start while the cancelled run still winds down.
   */
  after?: Promise<void>;
};

/**
 * Runs one acquired job to its end: heartbeats while it runs, the template's driver (aborted if
 * a heartbeat learns that the job is no longer ours), then the report of its outputs or its error.
 * Never throws: whatever goes wrong is reported to the server or, failing that, logged.
 */
export async function runBuildJob(job: BuildJob, ctx: BuildJobContext): Promise<void> {
  const { build } = job;
  const log = ctx.log.child({
    buildId: build.id,
    taskId: job.taskId,
    transition: build.transition,
    driver: job.template?.driver ?? externalDriver,
  });
  const lost = new AbortController();
  const claim: Claim = { buildId: build.id, attempt: job.attempt };
  const heartbeats = keepAlive(ctx.api, claim, ctx.heartbeatMs, log, lost);
  try {
    log.info('job started', { reason: build.reason, template: job.template?.name ?? null, attempt: job.attempt });
    await ctx.after;
    const outcome = await performJob(
      job,
      { dataDir: ctx.dataDir, signal: lost.signal, log: log.info },
      { previousConversation: () => fetchConversation(ctx, build.id, lost.signal, log) },
    );
    if (lost.signal.aborted) {
      log.warn('job dropped: the server no longer holds it for this provisioner');
      return;
    }
    await report(ctx, claim, outcome, log);
  } catch (error) {
    log.error('job crashed', { error: (error as Error).stack ?? String(error) });
  } finally {
    heartbeats.stop();
  }
}

/** The job as this daemon holds it: which claim of it (a job handed out again is a new claim). */
type Claim = { buildId: string; attempt: number };

/** A resume's previous conversation, retried while the server cannot be reached (until the job is lost). */
function fetchConversation(ctx: BuildJobContext, buildId: string, lost: AbortSignal, log: Logger) {
  return retrying(() => ctx.api.previousConversation(buildId), {
    retryable: (error) => callFailure(error) === 'unavailable',
    onRetry: (error, waitMs) =>
      log.warn('cannot fetch the previous conversation, retrying', {
        error: describeFailure(error),
        retryInMs: waitMs,
      }),
    until: AbortSignal.any([lost, ctx.abandon]),
  });
}

/**
 * Sends a heartbeat every `everyMs` (one at a time); when the server answers that the job is no
 * longer ours, aborts `lost` and stops. Other failures are logged: the next beat may get through.
 */
function keepAlive(
  api: ProvisionerApi,
  { buildId, attempt }: Claim,
  everyMs: number,
  log: Logger,
  lost: AbortController,
): { stop(): void } {
  let beating = false;
  const timer = setInterval(async () => {
    if (beating) return;
    beating = true;
    try {
      await api.heartbeat(buildId, attempt);
    } catch (error) {
      if (callFailure(error) === 'lost') {
        clearInterval(timer);
        log.warn('heartbeat refused: the job is no longer ours, cancelling it', { error: describeFailure(error) });
        lost.abort();
      } else {
        log.warn('heartbeat failed', { error: describeFailure(error) });
      }
    } finally {
      beating = false;
    }
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}

/**
 * Completes the job on the server, retrying while it cannot be reached (until the daemon gives
 * up). Outputs the server refuses are reported as the job's failure instead.
 */
async function report(ctx: BuildJobContext, claim: Claim, outcome: JobOutcome, log: Logger): Promise<void> {
  try {
    await retrying(() => ctx.api.complete(claim.buildId, outcome, claim.attempt), {
      retryable: (error) => callFailure(error) === 'unavailable',
      onRetry: (error, waitMs) =>
        log.warn('cannot report the job, retrying', { error: describeFailure(error), retryInMs: waitMs }),
      until: ctx.abandon,
    });
  } catch (error) {
    if (error instanceof GaveUp) {
      log.error('job not reported: stopped before the server could be reached', {
        error: describeFailure(error.cause),
      });
    } else if (callFailure(error) === 'lost') {
      log.warn('job not reported: the server no longer holds it for this provisioner', {
        error: describeFailure(error),
      });
    } else if ('outputs' in outcome && outcome.outputs) {
      log.warn('the server refused the outputs; reporting a failure', { error: describeFailure(error) });
      await report(ctx, claim, { error: `the server refused the outputs: ${describeFailure(error)}` }, log);
    } else {
      log.error('job not reported: the server refused the report', { error: describeFailure(error) });
    }
    return;
  }
  if ('error' in outcome) log.info('job failed', { error: outcome.error });
  else log.info('job succeeded', { outputs: outcome.outputs ?? {} });
}
