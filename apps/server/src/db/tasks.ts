import { sql } from 'kysely';
import { deriveStatus, type PauseStage, pauseStageOf, type TaskStatus } from '../domain/lifecycle.ts';
import type { Schedule } from '../domain/schedules.ts';
import { type Build, toBuild } from './builds.ts';
import type { Db } from './connection.ts';
import { precompiled } from './precompiled.ts';
import { taskStatusSql } from './status-sql.ts';

/** A task as the service shows it: its row, its derived status and its latest build. */
export type Task = {
  id: string;
  ownerId: string;
  workspaceId: string;
  name: string;
  prompt: string;
  /** Null until a template's workspace first started. */
  agentUrl: string | null;
  templateId: string | null;
  parameters: Record<string, string>;
  idleTimeoutSeconds: number | null;
  /** Auto-pause leaves the task alone until then (`tasks.keepAlive`); null: no keep-alive. */
  keepAliveUntil: Date | null;
  /** The task's own schedule, in place of its template's; null: its template's (or none). */
  schedule: Schedule | null;
  createdAt: Date;
  deletedAt: Date | null;
  status: TaskStatus;
  /** A paused task's stage (`hot`: frozen, thawed at once by a resume; `cold`: stopped); null unless paused. */
  pauseStage: PauseStage | null;
  latestBuild: Build | null;
};

/** Tasks joined with their workspace's latest build (one index lookup each). */
function tasksWithLatestBuild(db: Db) {
  return db
    .selectFrom('tasks')
    .leftJoinLateral(
      (eb) =>
        eb
          .selectFrom('workspace_builds')
          .selectAll()
          .whereRef('workspace_builds.workspace_id', '=', 'tasks.workspace_id')
          .orderBy('build_number', 'desc')
          .limit(1)
          .as('b'),
      (join) => join.onTrue(),
    )
    .selectAll('tasks')
    .select([
      'b.id as b_id',
      'b.workspace_id as b_workspace_id',
      'b.build_number as b_build_number',
      'b.transition as b_transition',
      'b.reason as b_reason',
      'b.initiator_id as b_initiator_id',
      'b.job_status as b_job_status',
      'b.error as b_error',
      'b.created_at as b_created_at',
      'b.started_at as b_started_at',
      'b.completed_at as b_completed_at',
      'b.provisioner_id as b_provisioner_id',
      'b.provisioner_key_id as b_provisioner_key_id',
      'b.heartbeat_at as b_heartbeat_at',
      'b.template_id as b_template_id',
      'b.outputs as b_outputs',
    ]);
}

type TaskQuery = ReturnType<typeof tasksWithLatestBuild>;
type TaskJoinRow = Awaited<ReturnType<TaskQuery['executeTakeFirstOrThrow']>>;

function toTask(row: TaskJoinRow): Task {
  const latestBuild =
    row.b_id === null
      ? null
      : toBuild({
          id: row.b_id,
          workspace_id: row.b_workspace_id!,
          build_number: row.b_build_number!,
          transition: row.b_transition!,
          reason: row.b_reason!,
          initiator_id: row.b_initiator_id,
          job_status: row.b_job_status!,
          error: row.b_error,
          created_at: row.b_created_at!,
          started_at: row.b_started_at,
          completed_at: row.b_completed_at,
          provisioner_id: row.b_provisioner_id,
          provisioner_key_id: row.b_provisioner_key_id,
          heartbeat_at: row.b_heartbeat_at,
          template_id: row.b_template_id,
          outputs: row.b_outputs,
        });
  const status = deriveStatus(row.deleted_at, latestBuild);
  return {
    id: row.id,
    ownerId: row.owner_id,
    workspaceId: row.workspace_id,
    name: row.name,
    prompt: row.prompt,
    agentUrl: row.agent_url,
    templateId: row.template_id,
    parameters: row.parameters as Record<string, string>,
    idleTimeoutSeconds: row.idle_timeout_seconds,
    keepAliveUntil: row.keep_alive_until,
    schedule: row.schedule as Schedule | null,
    createdAt: row.created_at,
    deletedAt: row.deleted_at,
    status,
    pauseStage: pauseStageOf(status, latestBuild?.outputs, new Date()),
    latestBuild,
  };
}

/** The query behind findTask, for callers that run its SQL themselves (the benchmark's raw baseline). */
export function findTaskQuery(db: Db, id: string, options: { ownerId?: string } = {}) {
  let query = tasksWithLatestBuild(db).where('tasks.id', '=', id);
  if (options.ownerId) query = query.where('tasks.owner_id', '=', options.ownerId);
  return query;
}

// The hottest read (every tasks.get), compiled once.
const taskById = precompiled(1, (db, id: string) => findTaskQuery(db, id));
const ownersTaskById = precompiled(2, (db, id: string, ownerId: string) => findTaskQuery(db, id, { ownerId }));

/** One task by id, whatever its status, or undefined. */
export async function findTask(db: Db, id: string, options: { ownerId?: string } = {}): Promise<Task | undefined> {
  const [row] = options.ownerId ? await ownersTaskById(db, id, options.ownerId) : await taskById(db, id);
  return row && toTask(row);
}

/** The tasks among `ids` that exist, whatever their status, in one query. */
export async function findTasks(db: Db, ids: readonly string[]): Promise<Task[]> {
  if (ids.length === 0) return [];
  const rows = await tasksWithLatestBuild(db).where('tasks.id', 'in', ids).execute();
  return rows.map(toTask);
}

export type TaskFilter = {
  status?: TaskStatus;
  ownerId?: string;
  limit: number;
  /** The last task of the previous page, as `taskCursor` encodes it. */
  after?: { createdAt: Date; id: string };
};

/** Tasks newest first, filtered in the database by derived status and owner, keyset-paginated. */
export async function listTasks(db: Db, filter: TaskFilter): Promise<{ items: Task[]; more: boolean }> {
  let query = tasksWithLatestBuild(db);
  if (filter.ownerId) query = query.where('tasks.owner_id', '=', filter.ownerId);
  if (filter.status) {
    const status = taskStatusSql(sql.ref('tasks.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
    query = query.where(sql<boolean>`${status} = ${filter.status}`);
  } else {
    query = query.where('tasks.deleted_at', 'is', null);
  }
  if (filter.after) {
    const { createdAt, id } = filter.after;
    // The cursor's time has milliseconds and the column microseconds: compared with the cursor's
    // time alone, tasks created in the same millisecond as the page's last one would be skipped.
    // The row's own time, while it exists.
    const exact = sql<Date>`COALESCE((SELECT c.created_at FROM tasks c WHERE c.id = ${id}), ${createdAt})`;
    query = query.where(sql<boolean>`(tasks.created_at, tasks.id) < (${exact}, ${id}::uuid)`);
  }
  const rows = await query
    .orderBy('tasks.created_at', 'desc')
    .orderBy('tasks.id', 'desc')
    .limit(filter.limit + 1)
    .execute();
  return { items: rows.slice(0, filter.limit).map(toTask), more: rows.length > filter.limit };
}

export type NewTaskRow = {
  ownerId: string;
  name: string;
  prompt: string;
  /** Given for an external workspace; null for a template's, until its first start reports one. */
  agentUrl: string | null;
  templateId?: string | null;
  parameters?: Record<string, string>;
  idleTimeoutSeconds: number | null;
  schedule?: Schedule | null;
};

/** Inserts a task with its workspace (no build yet: the caller queues the first one in the same transaction). */
export async function insertTaskWithWorkspace(
  trx: Db,
  input: NewTaskRow,
): Promise<{ id: string; workspaceId: string }> {
  const workspace = await trx
    .insertInto('workspaces')
    .values({ owner_id: input.ownerId, name: input.name })
    .returning('id')
    .executeTakeFirstOrThrow();
  const task = await trx
    .insertInto('tasks')
    .values({
      owner_id: input.ownerId,
      workspace_id: workspace.id,
      name: input.name,
      prompt: input.prompt,
      agent_url: input.agentUrl,
      template_id: input.templateId ?? null,
      parameters: JSON.stringify(input.parameters ?? {}),
      idle_timeout_seconds: input.idleTimeoutSeconds,
      schedule: input.schedule ? JSON.stringify(input.schedule) : null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: task.id, workspaceId: workspace.id };
}

/** Where the task's agent now answers: the output of its latest successful start. */
export async function setAgentUrl(trx: Db, taskId: string, agentUrl: string): Promise<void> {
  await trx.updateTable('tasks').set({ agent_url: agentUrl }).where('id', '=', taskId).execute();
}

/** The settings a caller may change on a live task. */
export type TaskSettings = { agentUrl?: string; idleTimeoutSeconds?: number | null; schedule?: Schedule | null };

/** A live task's settings, its row locked until the transaction ends; undefined once deleted (or never there). */
export async function lockLiveTaskSettings(
  trx: Db,
  taskId: string,
): Promise<{ agentUrl: string | null; idleTimeoutSeconds: number | null; schedule: Schedule | null } | undefined> {
  const row = await trx
    .selectFrom('tasks')
    .where('id', '=', taskId)
    .where('deleted_at', 'is', null)
    .select(['agent_url', 'idle_timeout_seconds', 'schedule'])
    .forUpdate()
    .executeTakeFirst();
  return (
    row && {
      agentUrl: row.agent_url,
      idleTimeoutSeconds: row.idle_timeout_seconds,
      schedule: row.schedule as Schedule | null,
    }
  );
}

/** Sets the given settings of a task (an undefined one stays; a null idle timeout clears it). */
export async function updateTaskSettings(trx: Db, taskId: string, settings: TaskSettings): Promise<void> {
  await trx
    .updateTable('tasks')
    .set({
      ...(settings.agentUrl !== undefined ? { agent_url: settings.agentUrl } : {}),
      ...(settings.idleTimeoutSeconds !== undefined ? { idle_timeout_seconds: settings.idleTimeoutSeconds } : {}),
      ...(settings.schedule !== undefined
        ? { schedule: settings.schedule === null ? null : JSON.stringify(settings.schedule) }
        : {}),
    })
    .where('id', '=', taskId)
    .execute();
}

/** The unique index that keeps a user's live task names distinct. */
export const liveTaskNameConstraint = 'tasks_owner_name_live_idx';

/** Marks a task deleted; its rows stay until purged. */
export async function softDeleteTask(trx: Db, taskId: string): Promise<void> {
  await trx.updateTable('tasks').set({ deleted_at: sql`NOW()` }).where('id', '=', taskId).execute();
}

/** The task of a workspace, or null for a workspace without one. */
export async function taskIdOfWorkspace(db: Db, workspaceId: string): Promise<string | null> {
  const task = await db.selectFrom('tasks').where('workspace_id', '=', workspaceId).select('id').executeTakeFirst();
  return task?.id ?? null;
}

/**
 * Claims up to `limit` active tasks whose agent is due to be asked for its status (the auto-pause
 * pass), due before `cutoff`, and moves their next check `intervalMs` on: a pass in another
 * process skips them, locked while this claim runs and no longer due once it committed. Oldest
 * due first; the tasks as they are now.
 */
export async function claimDueAgentChecks(
  db: Db,
  options: { limit: number; intervalMs: number; cutoff: Date },
): Promise<Task[]> {
  const status = taskStatusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
  const claimed = await sql<{ id: string }>`
    WITH due AS (
      SELECT t.id FROM tasks t
      LEFT JOIN LATERAL (
        SELECT w.transition, w.job_status FROM workspace_builds w
        WHERE w.workspace_id = t.workspace_id ORDER BY w.build_number DESC LIMIT 1
      ) b ON TRUE
      WHERE t.deleted_at IS NULL
        AND (t.agent_check_due_at IS NULL OR t.agent_check_due_at < ${options.cutoff})
        AND ${status} = 'active'
      ORDER BY t.agent_check_due_at NULLS FIRST
      LIMIT ${options.limit}
      FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks SET agent_check_due_at = NOW() + make_interval(secs => ${options.intervalMs / 1000})
    FROM due WHERE tasks.id = due.id
    RETURNING tasks.id`.execute(db);
  if (claimed.rows.length === 0) return [];
  const rows = await tasksWithLatestBuild(db)
    .where(
      'tasks.id',
      'in',
      claimed.rows.map((row) => row.id),
    )
    .execute();
  return rows.map(toTask);
}

/** The agent was seen working: its idle clock stops. */
export async function markAgentRunning(db: Db, taskId: string): Promise<void> {
  await db
    .updateTable('tasks')
    .set({ agent_idle_since: null, agent_last_running_at: sql`NOW()` })
    .where('id', '=', taskId)
    .execute();
}

/**
 * The agent was seen idle (or not at all): its idle clock starts if it was not running, in the
 * database so every server process shares it. Returns the seconds it has been idle; undefined
 * while a keep-alive holds (the clock stays stopped, and starts once it has run out).
 */
export async function markAgentIdle(db: Db, taskId: string): Promise<number | undefined> {
  // Written only when it changes (the clock starts, or a keep-alive stops it): a look at an agent
  // that stays idle, the common case, writes no new version of the task's row.
  const { rows } = await sql<{ idle_seconds: number | null }>`
    WITH current AS (
      SELECT id, agent_idle_since, COALESCE(keep_alive_until > NOW(), FALSE) AS kept FROM tasks WHERE id = ${taskId}
    ), changed AS (
      UPDATE tasks t SET agent_idle_since = CASE WHEN c.kept THEN NULL ELSE NOW() END
      FROM current c
      WHERE t.id = c.id AND c.kept = (c.agent_idle_since IS NOT NULL)
      RETURNING t.agent_idle_since
    )
    SELECT EXTRACT(EPOCH FROM NOW() - CASE WHEN EXISTS (SELECT 1 FROM changed)
      THEN (SELECT agent_idle_since FROM changed) ELSE (SELECT agent_idle_since FROM current) END)::float8 AS idle_seconds`.execute(
    db,
  );
  return rows[0]?.idle_seconds ?? undefined;
}

/**
 * Keeps a live task alive for `seconds` from now (replacing an earlier keep-alive) and restarts
 * its idle clock, the row locked until the transaction ends. Returns the keep-alive before and
 * after; undefined once the task is deleted (or was never there).
 */
export async function setKeepAlive(
  trx: Db,
  taskId: string,
  seconds: number,
): Promise<{ before: Date | null; until: Date } | undefined> {
  const current = await trx
    .selectFrom('tasks')
    .where('id', '=', taskId)
    .where('deleted_at', 'is', null)
    .select('keep_alive_until')
    .forUpdate()
    .executeTakeFirst();
  if (!current) return undefined;
  const row = await trx
    .updateTable('tasks')
    .set({ keep_alive_until: sql`NOW() + make_interval(secs => ${seconds})`, agent_idle_since: null })
    .where('id', '=', taskId)
    .returning('keep_alive_until')
    .executeTakeFirstOrThrow();
  return { before: current.keep_alive_until, until: row.keep_alive_until! };
}

/** Starts the idle clock afresh (a resumed agent has not been idle yet). */
export async function resetIdleClock(trx: Db, taskId: string): Promise<void> {
  await trx.updateTable('tasks').set({ agent_idle_since: null }).where('id', '=', taskId).execute();
}

/** When the agent was last seen working, and the database's clock now. */
export async function findAgentActivity(db: Db, taskId: string): Promise<{ lastRunningAt: Date | null; now: Date }> {
  const row = await db
    .selectFrom('tasks')
    .where('id', '=', taskId)
    .select(['agent_last_running_at', sql<Date>`NOW()`.as('now')])
    .executeTakeFirstOrThrow();
  return { lastRunningAt: row.agent_last_running_at, now: row.now };
}

/**
 * Removes tasks soft-deleted more than `olderThanMs` ago, with their workspaces. Their snapshots
 * and builds go by the foreign keys' cascades. Returns the purged task ids.
 */
export async function purgeDeletedTasks(db: Db, olderThanMs: number): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const purged = await trx
      .deleteFrom('tasks')
      .where('deleted_at', '<', sql<Date>`NOW() - make_interval(secs => ${olderThanMs / 1000})`)
      .returning(['id', 'workspace_id'])
      .execute();
    if (purged.length > 0) {
      await trx
        .deleteFrom('workspaces')
        .where(
          'id',
          'in',
          purged.map((t) => t.workspace_id),
        )
        .execute();
    }
    return purged.map((t) => t.id);
  });
}

/**
 * Live tasks counted by derived status, and the outputs of the paused ones whose latest build says
 * a driver holds them hot (few: the stage itself is `pauseStageOf`'s to say).
 */
export async function countTasksByStatus(
  db: Db,
): Promise<{ counts: Array<{ status: TaskStatus; count: number }>; hotOutputs: Array<Record<string, unknown>> }> {
  const status = taskStatusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
  const { rows } = await sql<{ status: TaskStatus; count: string; hot: Array<Record<string, unknown>> | null }>`
    SELECT ${status} AS status, count(*) AS count,
      jsonb_agg(b.outputs) FILTER (WHERE b.outputs->>'pauseStage' = 'hot') AS hot
    FROM tasks t
    LEFT JOIN LATERAL (
      SELECT transition, job_status, outputs FROM workspace_builds
      WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
    ) b ON true
    WHERE t.deleted_at IS NULL
    GROUP BY 1`.execute(db);
  return {
    counts: rows.map((r) => ({ status: r.status, count: Number(r.count) })),
    hotOutputs: rows.find((r) => r.status === 'paused')?.hot ?? [],
  };
}
