import { type Expression, sql } from 'kysely';
import type { BuildReason, ProvisionerJobStatus, WorkspaceTransition } from '../db/schema.ts';
import { LifecycleError } from './errors.ts';

/**
 * The task state machine, in one place. A task's status is never stored: it is derived from its
 * workspace's latest build (transition and job status) and its soft delete.
 */
export const taskStatuses = ['pending', 'initializing', 'active', 'pausing', 'paused', 'error', 'deleted'] as const;
export type TaskStatus = (typeof taskStatuses)[number];

/** Status by the latest build's transition and job status. */
const statusByBuild: Record<WorkspaceTransition, Record<ProvisionerJobStatus, TaskStatus>> = {
  start: { pending: 'pending', running: 'initializing', succeeded: 'active', failed: 'error', canceled: 'error' },
  stop: { pending: 'pausing', running: 'pausing', succeeded: 'paused', failed: 'error', canceled: 'error' },
  delete: { pending: 'deleted', running: 'deleted', succeeded: 'deleted', failed: 'deleted', canceled: 'deleted' },
};

export type LatestBuildFacts = { transition: WorkspaceTransition; jobStatus: ProvisionerJobStatus } | null;

export function deriveStatus(deletedAt: Date | null, latest: LatestBuildFacts): TaskStatus {
  if (deletedAt !== null) return 'deleted';
  // A task is created with its first build, in one transaction: no build means it is being created.
  if (latest === null) return 'pending';
  return statusByBuild[latest.transition][latest.jobStatus];
}

/** The same derivation as SQL, built from the same table, for filtering lists in the database. */
export function statusSql(
  deletedAt: Expression<Date | null>,
  transition: Expression<WorkspaceTransition | null>,
  jobStatus: Expression<ProvisionerJobStatus | null>,
): Expression<TaskStatus> {
  const arms = Object.entries(statusByBuild).flatMap(([t, byJob]) =>
    Object.entries(byJob).map(([j, status]) => sql`WHEN ${transition} = ${t} AND ${jobStatus} = ${j} THEN ${status}`),
  );
  return sql<TaskStatus>`(CASE WHEN ${deletedAt} IS NOT NULL THEN 'deleted' ${sql.join(arms, sql` `)} ELSE 'pending' END)`;
}

/** Lifecycle operations, the statuses each is allowed from, and the build it makes. */
export const transitions = {
  pause: { from: ['active'], transition: 'stop' },
  resume: { from: ['paused', 'error'], transition: 'start' },
  delete: { from: ['pending', 'initializing', 'active', 'pausing', 'paused', 'error'], transition: 'delete' },
} as const satisfies Record<string, { from: readonly TaskStatus[]; transition: WorkspaceTransition }>;
export type Operation = keyof typeof transitions;

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
] as const satisfies readonly BuildReason[];

export const pauseReasons = ['task_manual_pause', 'task_auto_pause'] as const satisfies readonly BuildReason[];
export type PauseReason = (typeof pauseReasons)[number];

/** What a transition check needs to know of a task. */
export type TransitionSubject = {
  id: string;
  status: TaskStatus;
  latestBuild: { transition: WorkspaceTransition } | null;
};

/**
 * Throws a conflict naming the current status when `operation` is not allowed from it.
 * Resuming from `error` is allowed only after a failed stop, where the workspace may be half down.
 */
export function assertAllowed(operation: Operation, task: TransitionSubject): void {
  const allowed = transitions[operation].from as readonly TaskStatus[];
  const failedStart = operation === 'resume' && task.status === 'error' && task.latestBuild?.transition !== 'stop';
  if (!allowed.includes(task.status) || failedStart) {
    const when = operation === 'resume' ? 'paused, or error after a failed stop' : allowed.join(' or ');
    throw new LifecycleError(
      'conflict',
      `cannot ${operation} task ${task.id}: it is ${task.status}${failedStart ? ' after a failed start' : ''} (${operation} is allowed when ${when})`,
    );
  }
}
