import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { hiatusErrorCode } from '@hiatus/client';
import { externalDriver, runBuildJob } from './build-job.ts';
import { defaults } from './defaults.ts';
import type { Driver } from './driver.ts';
import { jsonLogger, type Logger } from './log.ts';
import { type BuildJob, callFailure, createProvisionerApi, describeFailure } from './provisioner-api.ts';
import { batchedShouldRun } from './reconcile.ts';
import { type DriverName, drivers } from './registry.ts';
import { Backoff, GaveUp, pause, retrying } from './retry.ts';

/** The drivers a daemon can serve: the real ones, and `external` (template-less jobs, completed at once). */
export const daemonDrivers = [...Object.keys(drivers), externalDriver] as const;

export type DaemonOptions = {
  /** The Hiatus server's base URL, such as `http://hiatus.internal:8080`. */
  url: string;
  /** A provisioner key, or an admin's full key. */
  token: string;
  /** How this daemon names itself to the server; `<hostname>-<pid>` by default. */
  provisionerId?: string;
  /** The drivers whose jobs it takes (all by default). */
  drivers?: readonly string[];
  /** The template names whose jobs it takes (any by default). */
  templates?: readonly string[];
  /**
   * Its tags, such as `{ host: 'a' }`: it takes the jobs of templates whose provisioner tags are all
   * among them, and of untagged templates. Without tags (the default), only untagged templates' jobs.
   */
  tags?: Readonly<Record<string, string>>;
  /** Where the drivers keep their state; daemons on one host share it. `.hiatus/provisioner` by default. */
  dataDir?: string;
  /** Jobs run at once. */
  concurrency?: number;
  heartbeatMs?: number;
  /** How long one acquire waits on the server for a job (long poll), 0 to 30000. */
  waitMs?: number;
  /** JSON lines on stdout by default. */
  log?: Logger;
};

export type ProvisionerDaemon = {
  /** Stops taking jobs, lets the running ones finish and report; resolves with `done`. */
  stop(): Promise<void>;
  /** Settles when the daemon has stopped; never rejects. */
  done: Promise<void>;
};

/**
 * Runs build jobs from a Hiatus server with this package's drivers: first reconciles what the
 * drivers left running with what the server says should run, then takes up to `concurrency`
 * jobs at once (long-polling for them), each kept alive by heartbeats and reported when it ends.
 * A server that cannot be reached is retried with a capped backoff, for as long as it takes.
 *
 * ```ts
 * const daemon = startProvisionerDaemon({ url: 'http://127.0.0.1:8080', token: process.env.HIATUS_TOKEN! });
 * process.once('SIGTERM', () => void daemon.stop());
 * await daemon.done;
 * ```
 */
export function startProvisionerDaemon(options: DaemonOptions): ProvisionerDaemon {
  const provisionerId = options.provisionerId ?? `${hostname()}-${process.pid}`;
  const served = [...(options.drivers ?? daemonDrivers)];
  const templates = options.templates ? [...options.templates] : undefined;
  const tags = { ...options.tags };
  const dataDir = resolve(options.dataDir ?? defaults.dataDir);
  const concurrency = options.concurrency ?? defaults.concurrency;
  const heartbeatMs = options.heartbeatMs ?? defaults.heartbeatMs;
  const waitMs = options.waitMs ?? defaults.acquireWaitMs;
  const log = (options.log ?? jsonLogger()).child({ provisionerId });
  const api = createProvisionerApi({ url: options.url, token: options.token, provisionerId });

  /** Aborted by stop(): no more jobs are taken. */
  const stopping = new AbortController();
  const stopped = new Promise<void>((resolve) => stopping.signal.addEventListener('abort', () => resolve()));
  /** Aborted drainReportMs after stop(): reports the server has not taken by then are given up. */
  const abandon = new AbortController();
  const running = new Set<Promise<void>>();
  /** The latest run of each task's jobs: a task's jobs run one after the other here. */
  const latestOfTask = new Map<string, Promise<void>>();
  let acquiring = false;

  /** Stops what the drivers left running for tasks that should not run now; nothing when the server cannot say. */
  async function reconcile(): Promise<void> {
    const shouldRun = batchedShouldRun((taskIds) =>
      retrying(() => api.shouldRun(taskIds), {
        retryable: (error) => callFailure(error) === 'unavailable',
        onRetry: (error, retryInMs) =>
          log[levelOf(error)]('cannot ask the server which tasks should run, retrying', {
            error: describeFailure(error),
            retryInMs,
          }),
        until: stopping.signal,
      }),
    );
    for (const name of served) {
      const driver: Driver | undefined = Object.hasOwn(drivers, name) ? drivers[name as DriverName] : undefined;
      if (!driver?.reconcile) continue;
      try {
        const stoppedTasks = await driver.reconcile(shouldRun, { dataDir, log: log.info });
        log.info('reconciled', { driver: name, stopped: stoppedTasks });
      } catch (error) {
        if (error instanceof GaveUp) return;
        log.error('reconcile failed; nothing more was stopped', { driver: name, error: (error as Error).message });
      }
    }
  }

  /** Takes jobs until stopped, never more than `concurrency` running at once. */
  async function serve(): Promise<void> {
    const backoff = new Backoff();
    while (!stopping.signal.aborted) {
      if (running.size >= concurrency) {
        await Promise.race([stopped, ...running]);
        continue;
      }
      const asked = Date.now();
      let job: BuildJob | null;
      try {
        // Not cancelled by stop(): the server may be handing this provisioner a job right then.
        acquiring = true;
        job = await api.acquire({ drivers: served, templates, tags, waitMs });
        backoff.reset();
      } catch (error) {
        const retryInMs = backoff.next();
        log[levelOf(error)]('cannot acquire a job, retrying', {
          error: describeFailure(error),
          retryInMs,
        });
        await pause(retryInMs, stopping.signal);
        continue;
      } finally {
        acquiring = false;
      }
      if (job) {
        const task = job.taskId ?? job.build.workspaceId;
        const after = latestOfTask.get(task);
        const run = runBuildJob(job, { api, dataDir, heartbeatMs, log, abandon: abandon.signal, after });
        latestOfTask.set(task, run);
        running.add(run);
        void run.finally(() => {
          running.delete(run);
          if (latestOfTask.get(task) === run) latestOfTask.delete(task);
        });
      } else {
        // A server that answers at once (no long poll) is not asked again at once.
        await pause(Math.max(0, defaults.emptyPollMs - (Date.now() - asked)), stopping.signal);
      }
    }
  }

  const done = (async () => {
    log.info('provisioner started', {
      url: withoutPassword(options.url),
      drivers: served,
      templates: templates ?? 'any',
      tags,
      dataDir,
      concurrency,
    });
    await reconcile();
    await serve();
    if (running.size > 0) log.info('waiting for the running jobs', { runningJobs: running.size });
    await Promise.allSettled(running);
    log.info('provisioner stopped');
  })().catch((error: unknown) => {
    log.error('provisioner failed', { error: (error as Error).stack ?? String(error) });
  });

  return {
    done,
    async stop() {
      if (!stopping.signal.aborted) {
        log.info('stopping: taking no more jobs', {
          runningJobs: running.size,
          // A long poll in flight is waited for, and a job it brings is run: it is already ours.
          acquireInFlight: acquiring ? `answers within ${waitMs} ms` : 'none',
        });
        stopping.abort();
        setTimeout(() => abandon.abort(), defaults.drainReportMs).unref();
      }
      await done;
    },
  };
}

/** A refused key needs someone to act; a server away for a while does not (yet). */
function levelOf(error: unknown): 'warn' | 'error' {
  const code = hiatusErrorCode(error);
  return code === 'UNAUTHORIZED' || code === 'FORBIDDEN' ? 'error' : 'warn';
}

/** The URL as it may be logged. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
