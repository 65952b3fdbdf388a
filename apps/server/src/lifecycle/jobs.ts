import type { AgentMessage } from '../agentapi/schema.ts';
import type { App } from '../app.ts';
import { audit, changed } from '../audit/audit.ts';
import type { Build } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import { announceChange } from '../db/events.ts';
import {
  type AcquiredJob,
  acquireJob,
  completeJob,
  endStaleJobs,
  findJobContext,
  findRunningJob,
  heartbeatJob,
  type JobContext,
  type JobFilter,
  type JobHolder,
  type JobRow,
  releaseAcquiredJob,
} from '../db/jobs.ts';
import { findTasks, setAgentUrl, taskIdOfWorkspace } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { runningStatuses } from '../domain/lifecycle.ts';
import { nextBuildEvent } from './build-events.ts';
import { recordJobEnd } from './events.ts';
import { previousConversation } from './previous-conversation.ts';

/** A build job a provisioner holds, with the task it is for (null for a workspace without one). */
export type BuildJob = { build: Build; taskId: string | null };

/** A job's end as recorded: the job, and the last event it recorded (if any). */
type RecordedEnd = BuildJob & { eventId?: string };

/**
 * A job with everything a driver needs: the task, the template version, the last start's outputs,
 * and a start's kind: `first` (the task's creation) or `resume` (null for a stop or a delete). A
 * resume's previous conversation is not in it: see `jobPreviousConversation`. `attempt` counts
 * its claims: above 1, a provisioner that held it went silent, maybe halfway through (a start's
 * driver then first undoes whatever that one may have left).
 */
export type ProvisionerJob = BuildJob & JobContext & { start: 'first' | 'resume' | null; attempt: number };

/** A start build queued by a task's creation is its first; any other start resumes it. */
function startKind(build: Build): 'first' | 'resume' | null {
  if (build.transition !== 'start') return null;
  return build.reason === 'initiator' ? 'first' : 'resume';
}

export type { JobHolder };

/** A holder as the services take it: a name alone is a keyless one (the built-in provisioner, tests). */
export type Holder = JobHolder | string;

const holderOf = (holder: Holder): JobHolder => (typeof holder === 'string' ? { keyId: null, name: holder } : holder);

export type AcquireOptions = JobFilter & {
  /** How long to wait for a matching job when none is pending (a long poll); 0 answers at once. */
  waitMs?: number;
  /**
   * Aborts when the provisioner asking has gone (its request's client disconnected) before the
   * answer was written whole, and never after: the wait ends, and no job is given to it (see
   * `acquireBuildJob`). The tRPC adapter's request signal is such a signal.
   */
  signal?: AbortSignal;
};

/** The client left while its job was being claimed: the claim is rolled back. */
class ClientGone extends Error {}

/**
 * Takes the oldest pending build job matching the provisioner's drivers and templates; each job
 * goes to exactly one provisioner. With `waitMs`, waits for one: woken at once by jobs queued in
 * this process, and looking again every `provisionerPollMs` for those of other processes.
 *
 * With `signal` (the request's), a provisioner that has gone gets no job: the wait ends when it
 * aborts; a claim is rolled back when it aborted before the claim's commit; and a job claimed
 * whose answer could not be written (the signal aborts after the commit, before the response
 * ended) is given back to the queue at once, unless its holder heartbeated meanwhile. What stays
 * open is an answer written whole that its client never read (it died between the server's
 * last write and its own read): that job waits for its heartbeats to go stale, as before.
 */
export async function acquireBuildJob(
  app: Pick<App, 'db' | 'events'>,
  holder: Holder,
  options: AcquireOptions = {},
): Promise<ProvisionerJob | null> {
  const { signal } = options;
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    if (signal?.aborted) return null;
    const claimed = await claimJob(app.db, holderOf(holder), options);
    if (claimed && signal?.aborted) {
      await giveBack(app, claimed.build, holderOf(holder));
      return null;
    }
    if (claimed) {
      const { build, attempt } = claimed;
      signal?.addEventListener('abort', () => void giveBack(app, build, holderOf(holder)), { once: true });
      const context = await findJobContext(app.db, build);
      const job = { build, taskId: context.task?.id ?? null, ...context, start: startKind(build), attempt };
      app.events.emit('build', { taskId: job.taskId, workspaceId: build.workspaceId, build });
      // The task is now initializing: watchers in other processes hear of it.
      await announceChange(app.db, { workspaceId: build.workspaceId, ...(job.taskId ? { taskId: job.taskId } : {}) });
      return job;
    }
    const left = deadline - Date.now();
    if (left <= 0) return null;
    await nextBuildEvent(
      app,
      (event) => event.build.jobStatus === 'pending',
      Math.min(left, defaults.provisionerPollMs),
      signal,
    );
  }
}

/** Claims a job in a transaction that commits only if the client is still there when it ends. */
async function claimJob(db: Db, holder: JobHolder, options: AcquireOptions): Promise<AcquiredJob | null> {
  try {
    return await db.transaction().execute(async (trx) => {
      const build = await acquireJob(trx, holder, options);
      if (build && options.signal?.aborted) throw new ClientGone();
      return build;
    });
  } catch (error) {
    if (error instanceof ClientGone) return null;
    throw error;
  }
}

/**
 * Puts a job whose answer never reached its provisioner back in the queue, and wakes the waiting
 * provisioners. Failing that (the database unreachable), the job goes stale as any job whose
 * provisioner is silent: nothing is lost, only later.
 */
async function giveBack(app: Pick<App, 'db' | 'events'>, build: Build, holder: JobHolder): Promise<void> {
  try {
    const released = await releaseAcquiredJob(app.db, build.id, holder);
    if (!released) return;
    const taskId = await taskIdOfWorkspace(app.db, released.workspaceId);
    app.events.emit('build', { taskId, workspaceId: released.workspaceId, build: released });
    await announceChange(app.db, { workspaceId: released.workspaceId, ...(taskId ? { taskId } : {}) });
  } catch {
    // Left to the stale-job loop.
  }
}

/**
 * Which of `taskIds` may keep a running workspace, by their status: a provisioner that restarts
 * stops whatever else it finds. A task this database does not know is not its to stop (another
 * Hiatus may share the folder), so it is in the answer too.
 */
export async function tasksThatShouldRun(app: Pick<App, 'db'>, taskIds: readonly string[]): Promise<string[]> {
  const known = new Map((await findTasks(app.db, taskIds)).map((task) => [task.id, task.status]));
  return taskIds.filter((id) => {
    const status = known.get(id);
    return status === undefined || runningStatuses.includes(status);
  });
}

/**
 * The previous conversation of a resume job `holder` holds, for its driver to hand to the
 * workspace: fetched apart from the job, since it can be as large as a snapshot. Only the running
 * job's holder may read it (as only it may heartbeat); a job that is no resume gets `bad_input`.
 */
export async function jobPreviousConversation(
  app: Pick<App, 'db' | 'settings'>,
  buildId: string,
  holder: Holder,
): Promise<AgentMessage[]> {
  const build = await findRunningJob(app.db, buildId, holderOf(holder));
  if (!build) throw notRunning(buildId);
  if (startKind(build) !== 'resume') {
    throw new HiatusError('bad_input', `build ${buildId} is no resume: it has no previous conversation`);
  }
  const taskId = await taskIdOfWorkspace(app.db, build.workspaceId);
  // As much of the history as one snapshot may hold: the file a resumed agent reads whole.
  return taskId ? previousConversation(app, taskId, app.settings.maxSnapshotBytes) : [];
}

/**
 * Records a provisioner's sign of life on a job it holds. Without `holder` (the system's own
 * calls), any running job; with one, only a job that holder acquired: a provisioner cannot keep
 * another's job alive. With `attempt` (the job's, as acquired), only that claim of it: a holder
 * whose job was handed out again while it was silent is told it lost it, even if the same key took it.
 */
export async function heartbeatBuildJob(
  app: Pick<App, 'db'>,
  buildId: string,
  holder?: Holder,
  attempt?: number,
): Promise<void> {
  if (!(await heartbeatJob(app.db, buildId, holder === undefined ? undefined : holderOf(holder), attempt))) {
    throw notRunning(buildId);
  }
}

/**
 * Ends a running job: succeeded, or failed with the error text; audited with the change. With
 * `holder`, only a job that holder acquired. An `agentUrl` in the outputs must be where drivers'
 * agents may be (HIATUS_DRIVER_AGENT_NETWORKS): else `bad_input` and nothing changes (a
 * provisioner then reports the refusal as the job's failure).
 */
export async function completeBuildJob(
  app: Pick<App, 'db' | 'events' | 'driverAgentUrlRefusal'>,
  buildId: string,
  outcome: { error?: string; holder?: Holder; attempt?: number; actor?: Actor; outputs?: Record<string, unknown> } = {},
): Promise<Build> {
  const agentUrl = outcome.outputs?.agentUrl;
  if (agentUrl !== undefined && (typeof agentUrl !== 'string' || !/^https?:\/\/[^\s]+$/.test(agentUrl))) {
    throw new HiatusError('bad_input', 'outputs.agentUrl must be an http(s) URL');
  }
  const refused = typeof agentUrl === 'string' ? await app.driverAgentUrlRefusal(agentUrl) : null;
  if (refused) throw new HiatusError('bad_input', `outputs.agentUrl: ${refused}`);
  const completed = await app.db.transaction().execute(async (trx) => {
    const holder = outcome.holder === undefined ? undefined : holderOf(outcome.holder);
    const job = await completeJob(trx, buildId, { ...outcome, holder });
    if (!job) throw notRunning(buildId);
    // The agent now answers where its start says: a task's agentUrl is its latest successful start's.
    const taskId = await taskIdOfWorkspace(trx, job.build.workspaceId);
    if (taskId && typeof agentUrl === 'string' && job.build.transition === 'start' && !outcome.error) {
      await setAgentUrl(trx, taskId, agentUrl);
    }
    // Last: recording events takes the lock that orders them, held until commit.
    return recordCompletion(trx, outcome.actor ?? systemActor, job, taskId);
  });
  announce(app, completed);
  return completed.build;
}

/** Tells this process's watchers and waiters about a job's end once committed. */
function announce(app: Pick<App, 'events'>, { build, taskId, eventId }: RecordedEnd): void {
  app.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  if (eventId) app.events.emit('change', { eventId, workspaceId: build.workspaceId, ...(taskId ? { taskId } : {}) });
}

/** A job whose provisioner went silent is handed out again until this many have taken it; then it fails. */
const maxJobAttempts = 3;

/**
 * Ends the claims of running jobs whose provisioner has been silent longer than `staleAfterMs`: a
 * job taken fewer than `maxAttempts` times is handed out again (the task stays pending or pausing,
 * and waiting provisioners are woken), the others fail (audited, `build.failed`, the task in error).
 * A provisioner killed mid-job thus costs its job a retry, not its task.
 */
export async function endStaleBuildJobs(
  app: Pick<App, 'db' | 'events'>,
  staleAfterMs: number,
  maxAttempts: number = maxJobAttempts,
): Promise<{ requeued: Build[]; failed: Build[] }> {
  const ended = await app.db.transaction().execute(async (trx) => {
    const { requeued, failed } = await endStaleJobs(trx, staleAfterMs, maxAttempts);
    const again: BuildJob[] = [];
    for (const { build } of requeued) {
      const taskId = await taskIdOfWorkspace(trx, build.workspaceId);
      await announceChange(trx, { workspaceId: build.workspaceId, ...(taskId ? { taskId } : {}) });
      again.push({ build, taskId });
    }
    const ends: RecordedEnd[] = [];
    for (const job of failed) {
      ends.push(await recordCompletion(trx, systemActor, job, await taskIdOfWorkspace(trx, job.build.workspaceId)));
    }
    return { again, ends };
  });
  for (const { build, taskId } of ended.again)
    app.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  for (const end of ended.ends) announce(app, end);
  return { requeued: ended.again.map((j) => j.build), failed: ended.ends.map((e) => e.build) };
}

/** The audit record and events of a job's end, in its transaction; returns the job with its task. */
async function recordCompletion(
  trx: Db,
  actor: Actor,
  { build, provisionerId, provisionerKeyId }: JobRow,
  taskId: string | null,
): Promise<RecordedEnd> {
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
      provisionerKeyId,
      ...(build.error === null ? {} : { error: build.error }),
    },
  });
  // Its events (paused, resumed, build failed), and a notice for watchers in other processes.
  const events = await recordJobEnd(trx, build, taskId);
  if (events.length === 0) await announceChange(trx, { workspaceId: build.workspaceId, ...(taskId ? { taskId } : {}) });
  return { build, taskId, eventId: events.at(-1)?.id };
}

function notRunning(buildId: string): HiatusError {
  return new HiatusError(
    'conflict',
    `build ${buildId} is not a running job held by this provisioner (a job belongs to the key that acquired it)`,
  );
}
