import { HiatusError } from './errors.ts';

/**
 * The task state machine, in one place. A task's status is never stored: it is derived from its
 * workspace's latest build (transition and job status) and its soft delete. Every rule (which
 * operations each state allows, what `send` does there) is a column of one frozen table.
 */

export const workspaceTransitions = ['start', 'stop', 'delete'] as const;
export type WorkspaceTransition = (typeof workspaceTransitions)[number];

export const jobStatuses = ['pending', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type JobStatus = (typeof jobStatuses)[number];

/** Why a build was made: the workspace's ordinary reasons, and the task lifecycle's own. */
export const buildReasons = [
  'initiator',
  'autostart',
  'autostop',
  'dormancy',
  'failedstop',
  'autodelete',
  'task_auto_pause',
  'task_manual_pause',
  'task_resume',
] as const;
export type BuildReason = (typeof buildReasons)[number];

export const pauseReasons = ['task_manual_pause', 'task_auto_pause'] as const satisfies readonly BuildReason[];
export type PauseReason = (typeof pauseReasons)[number];

export const taskStatuses = ['pending', 'initializing', 'active', 'pausing', 'paused', 'error', 'deleted'] as const;
export type TaskStatus = (typeof taskStatuses)[number];

/** Statuses whose workspace is up or coming up: what a restarting provisioner keeps running. */
export const runningStatuses: readonly TaskStatus[] = Object.freeze(['pending', 'initializing', 'active']);

/** The lifecycle's operations and the build each queues. */
export const operationTransition = {
  create: 'start',
  pause: 'stop',
  resume: 'start',
  delete: 'delete',
} as const satisfies Record<string, WorkspaceTransition>;
export type Operation = keyof typeof operationTransition;

/**
 * What `send` does in a state: `deliver` (active) posts to a stable agent at once, or queues in
 * the task's inbox behind a busy agent or earlier messages; with `resumeIfPaused`, `wait` queues
 * for the start under way and `resume` queues and resumes in one transaction; otherwise (and
 * always for `refuse`) it is refused. Queued messages go once the task is active and its agent stable.
 */
export type SendRule = 'deliver' | 'wait' | 'resume' | 'refuse';

export type TaskState = {
  readonly status: TaskStatus;
  /** The operations allowed from here (besides create, which starts from no task). */
  readonly allows: readonly Operation[];
  readonly send: SendRule;
  /** The state in words, where the status alone does not say enough. */
  readonly label: string;
};

const state = (status: TaskStatus, allows: Operation[], send: SendRule, label: string = status): TaskState =>
  Object.freeze({ status, allows: Object.freeze(allows), send, label });

/** The state by the latest build's transition and job status. */
export const stateByBuild: Readonly<Record<WorkspaceTransition, Readonly<Record<JobStatus, TaskState>>>> =
  Object.freeze({
    start: Object.freeze({
      pending: state('pending', ['delete'], 'wait'),
      running: state('initializing', ['delete'], 'wait'),
      succeeded: state('active', ['pause', 'delete'], 'deliver'),
      // A start that failed never brought the workspace up: resuming it would only fail again.
      failed: state('error', ['delete'], 'refuse', 'error after a failed start'),
      canceled: state('error', ['delete'], 'refuse', 'error after a failed start'),
    }),
    stop: Object.freeze({
      pending: state('pausing', ['delete'], 'refuse'),
      running: state('pausing', ['delete'], 'refuse'),
      succeeded: state('paused', ['resume', 'delete'], 'resume'),
      // A stop that failed may have left the workspace half down: a resume brings it back up.
      failed: state('error', ['resume', 'delete'], 'resume', 'error after a failed stop'),
      canceled: state('error', ['resume', 'delete'], 'resume', 'error after a failed stop'),
    }),
    delete: Object.freeze({
      pending: state('deleted', [], 'refuse'),
      running: state('deleted', [], 'refuse'),
      succeeded: state('deleted', [], 'refuse'),
      failed: state('deleted', [], 'refuse'),
      canceled: state('deleted', [], 'refuse'),
    }),
  });

/** A soft-deleted task, whatever its builds say. */
const deletedState = state('deleted', [], 'refuse');
/** A task is created with its first build in one transaction: no build means it is being created. */
const creatingState = state('pending', ['delete'], 'wait');

export type LatestBuildFacts = { transition: WorkspaceTransition; jobStatus: JobStatus } | null;

export function deriveState(deletedAt: Date | null, latest: LatestBuildFacts): TaskState {
  if (deletedAt !== null) return deletedState;
  if (latest === null) return creatingState;
  return stateByBuild[latest.transition][latest.jobStatus];
}

export function deriveStatus(deletedAt: Date | null, latest: LatestBuildFacts): TaskStatus {
  return deriveState(deletedAt, latest).status;
}

/**
 * Where a paused task is: `hot` while a driver holds its agent frozen (a docker template's
 * `hotPauseSeconds`: the stop build's outputs say `pauseStage: 'hot'` until `coldAt`), so a resume
 * thaws it at once; `cold` once it is stopped for real (every other pause); null unless paused.
 */
export type PauseStage = 'hot' | 'cold';
export function pauseStageOf(
  status: TaskStatus,
  latestOutputs: Record<string, unknown> | null | undefined,
  now: Date,
): PauseStage | null {
  if (status !== 'paused') return null;
  const coldAt = typeof latestOutputs?.coldAt === 'string' ? Date.parse(latestOutputs.coldAt) : Number.NaN;
  return latestOutputs?.pauseStage === 'hot' && coldAt > now.getTime() ? 'hot' : 'cold';
}

/** The status a task has right after `operation` queued its build. */
export function statusAfter(operation: Operation): TaskStatus {
  return stateByBuild[operationTransition[operation]].pending.status;
}

/** What a transition check needs to know of a task. */
export type TransitionSubject = { id: string; deletedAt: Date | null; latestBuild: LatestBuildFacts };

/** Throws a conflict naming the task's state when `operation` is not allowed from it. */
export function assertAllowed(operation: Exclude<Operation, 'create'>, task: TransitionSubject): void {
  const current = deriveState(task.deletedAt, task.latestBuild);
  if (current.allows.includes(operation)) return;
  throw new HiatusError(
    'conflict',
    `cannot ${operation} task ${task.id}: it is ${current.label} (${operation} is allowed when ${allowedWhen(operation)})`,
  );
}

const allStates = Object.values(stateByBuild).flatMap((byJob) => Object.values(byJob));

/** The states an operation is allowed from, in words: a status where all its states allow it, else their labels. */
function allowedWhen(operation: Operation): string {
  const words: string[] = [];
  for (const status of taskStatuses) {
    const states = allStates.filter((s) => s.status === status);
    const allowing = states.filter((s) => s.allows.includes(operation));
    if (allowing.length === states.length && states.length > 0) words.push(status);
    else for (const s of allowing) if (!words.includes(s.label)) words.push(s.label);
  }
  return words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words.at(-1)}` : (words[0] ?? 'never');
}
