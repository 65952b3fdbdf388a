import { sql } from 'kysely';
import type { TaskStatus } from '../domain/lifecycle.ts';
import type { Schedule } from '../domain/schedules.ts';
import type { Db } from './connection.ts';
import { taskStatusSql } from './status-sql.ts';

/** What a policy may act on once per task and due time, across server processes. */
export type PolicyOccasion = 'schedule_pause' | 'schedule_resume' | 'schedule_pause_warning' | 'retention_warning';

/** One occasion of one task: the primary key of its claim. */
export type OccasionKey = { taskId: string; occasion: PolicyOccasion; dueAt: Date };

/** A live task under a schedule (its own, or its template version's), as a schedule pass needs it. */
export type ScheduledTask = {
  id: string;
  ownerId: string;
  workspaceId: string;
  schedule: Schedule;
  status: TaskStatus;
  /** The workspace's latest build, and when it was queued. */
  latestBuildId: string | null;
  latestBuildAt: Date | null;
  /** Its latest build is a stop the schedule queued: the schedule paused it, and nobody changed it since. */
  pausedBySchedule: boolean;
  /** Messages wait in its inbox (`task_messages` queued). */
  hasQueuedMessages: boolean;
};

/** Live tasks with a schedule, by id after `after`, `limit` at a time. */
export async function listScheduledTasks(db: Db, page: { after?: string; limit: number }): Promise<ScheduledTask[]> {
  const status = taskStatusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
  const { rows } = await sql<{
    id: string;
    owner_id: string;
    workspace_id: string;
    schedule: Schedule;
    status: TaskStatus;
    build_id: string | null;
    build_at: Date | null;
    paused_by_schedule: boolean;
    has_queued_messages: boolean;
  }>`
    SELECT t.id, t.owner_id, t.workspace_id, COALESCE(t.schedule, tp.schedule) AS schedule, ${status} AS status,
      b.id AS build_id, b.created_at AS build_at,
      EXISTS (
        SELECT 1 FROM task_policy_occasions o
        WHERE o.task_id = t.id AND o.occasion = 'schedule_pause' AND o.build_id = b.id
      ) AS paused_by_schedule,
      EXISTS (SELECT 1 FROM task_messages m WHERE m.task_id = t.id AND m.status = 'queued') AS has_queued_messages
    FROM tasks t
    LEFT JOIN templates tp ON tp.id = t.template_id
    LEFT JOIN LATERAL (
      SELECT id, transition, job_status, created_at FROM workspace_builds
      WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
    ) b ON true
    WHERE t.deleted_at IS NULL
      AND COALESCE(t.schedule, tp.schedule) IS NOT NULL
      AND (${page.after ?? null}::uuid IS NULL OR t.id > ${page.after ?? null}::uuid)
    ORDER BY t.id
    LIMIT ${page.limit}`.execute(db);
  return rows.map((row) => ({
    id: row.id,
    ownerId: row.owner_id,
    workspaceId: row.workspace_id,
    schedule: row.schedule,
    status: row.status,
    latestBuildId: row.build_id,
    latestBuildAt: row.build_at,
    pausedBySchedule: row.paused_by_schedule,
    hasQueuedMessages: row.has_queued_messages,
  }));
}

/**
 * Claims an occasion, at `claimedAt` (the pass's clock): true for the one caller that recorded it,
 * false for every other (another process, or an earlier pass, had it).
 */
export async function claimOccasion(db: Db, key: OccasionKey, claimedAt: Date): Promise<boolean> {
  const row = await db
    .insertInto('task_policy_occasions')
    .values({ task_id: key.taskId, occasion: key.occasion, due_at: key.dueAt, claimed_at: claimedAt })
    .onConflict((oc) => oc.doNothing())
    .returning('task_id')
    .executeTakeFirst();
  return row !== undefined;
}

/** When the occasion was claimed, or undefined when it was not. */
export async function findOccasionClaim(db: Db, key: OccasionKey): Promise<Date | undefined> {
  const row = await db
    .selectFrom('task_policy_occasions')
    .select('claimed_at')
    .where('task_id', '=', key.taskId)
    .where('occasion', '=', key.occasion)
    .where('due_at', '=', key.dueAt)
    .executeTakeFirst();
  return row?.claimed_at;
}

/** Gives a claim back (its action failed in a way a later pass may get past). */
export async function releaseOccasion(db: Db, key: OccasionKey): Promise<void> {
  await db
    .deleteFrom('task_policy_occasions')
    .where('task_id', '=', key.taskId)
    .where('occasion', '=', key.occasion)
    .where('due_at', '=', key.dueAt)
    .execute();
}

/** Notes the build a claimed occasion's action queued, in that action's transaction. */
export async function recordOccasionBuild(trx: Db, key: OccasionKey, buildId: string): Promise<void> {
  await trx
    .updateTable('task_policy_occasions')
    .set({ build_id: buildId })
    .where('task_id', '=', key.taskId)
    .where('occasion', '=', key.occasion)
    .where('due_at', '=', key.dueAt)
    .execute();
}

/**
 * Whether `previousBuildId` is the build just before `build` in its workspace: nothing happened to
 * the task in between. Asked under the workspace lock, in the transaction that queued `build`.
 */
export async function buildFollows(
  trx: Db,
  build: { workspaceId: string; buildNumber: number },
  previousBuildId: string,
): Promise<boolean> {
  const row = await trx
    .selectFrom('workspace_builds')
    .select('id')
    .where('id', '=', previousBuildId)
    .where('workspace_id', '=', build.workspaceId)
    .where('build_number', '=', build.buildNumber - 1)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Removes claims of occasions due before `before`: no pass looks that far back. A schedule's pause
 * whose stop is still its task's latest build stays: it says the schedule paused the task, however
 * long ago. Returns how many.
 */
export async function deleteOccasionsBefore(db: Db, before: Date): Promise<number> {
  const result = await sql`
    DELETE FROM task_policy_occasions o
    WHERE o.due_at < ${before}::timestamptz
      AND NOT (o.occasion = 'schedule_pause' AND o.build_id IS NOT NULL AND o.build_id = (
        SELECT b.id FROM tasks t JOIN workspace_builds b ON b.workspace_id = t.workspace_id
        WHERE t.id = o.task_id ORDER BY b.build_number DESC LIMIT 1
      ))`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** A task paused (its latest build a stop that succeeded) under a retention limit. */
export type RetainedTask = {
  id: string;
  ownerId: string;
  /** The stop build that paused it; a delete goes ahead only while it is still the latest. */
  stopBuildId: string;
  pausedSince: Date;
  retentionDays: number;
};

/**
 * Paused tasks whose retention (their template version's `paused_retention_days`, else
 * `defaultDays`; 0: none) ends within `withinSeconds` of `now` or has ended, by id after `after`.
 */
export async function listPausedNearRetention(
  db: Db,
  query: { now: Date; defaultDays: number; withinSeconds: number; after?: string; limit: number },
): Promise<RetainedTask[]> {
  const days = sql<number>`COALESCE(tp.paused_retention_days, ${query.defaultDays}::integer)`;
  const { rows } = await sql<{
    id: string;
    owner_id: string;
    stop_build_id: string;
    paused_since: Date;
    retention_days: number;
  }>`
    SELECT t.id, t.owner_id, b.id AS stop_build_id, b.completed_at AS paused_since, ${days} AS retention_days
    FROM tasks t
    LEFT JOIN templates tp ON tp.id = t.template_id
    JOIN LATERAL (
      SELECT id, transition, job_status, completed_at FROM workspace_builds
      WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
    ) b ON b.transition = 'stop' AND b.job_status = 'succeeded'
    WHERE t.deleted_at IS NULL
      AND ${days} > 0
      AND b.completed_at + make_interval(days => ${days}) - make_interval(secs => ${query.withinSeconds})
        <= ${query.now}::timestamptz
      AND (${query.after ?? null}::uuid IS NULL OR t.id > ${query.after ?? null}::uuid)
    ORDER BY t.id
    LIMIT ${query.limit}`.execute(db);
  return rows.map((row) => ({
    id: row.id,
    ownerId: row.owner_id,
    stopBuildId: row.stop_build_id,
    pausedSince: row.paused_since,
    retentionDays: row.retention_days,
  }));
}
