import { sql } from 'kysely';
import { deriveStatus, statusSql, type TaskStatus } from '../lifecycle/status.ts';
import { type Build, toBuild } from './builds.ts';
import type { Db } from './connection.ts';

/** A task as the service shows it: its row, its derived status and its latest build. */
export type Task = {
  id: string;
  ownerId: string;
  workspaceId: string;
  name: string;
  prompt: string;
  agentUrl: string;
  idleTimeoutSeconds: number | null;
  createdAt: Date;
  deletedAt: Date | null;
  status: TaskStatus;
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
      'b.heartbeat_at as b_heartbeat_at',
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
          heartbeat_at: row.b_heartbeat_at,
        });
  return {
    id: row.id,
    ownerId: row.owner_id,
    workspaceId: row.workspace_id,
    name: row.name,
    prompt: row.prompt,
    agentUrl: row.agent_url,
    idleTimeoutSeconds: row.idle_timeout_seconds,
    createdAt: row.created_at,
    deletedAt: row.deleted_at,
    status: deriveStatus(row.deleted_at, latestBuild),
    latestBuild,
  };
}

/** The query behind findTask, for callers that run its SQL themselves (the benchmark's raw baseline). */
export function findTaskQuery(db: Db, id: string, options: { ownerId?: string } = {}) {
  let query = tasksWithLatestBuild(db).where('tasks.id', '=', id);
  if (options.ownerId) query = query.where('tasks.owner_id', '=', options.ownerId);
  return query;
}

/** One task by id, whatever its status, or undefined. */
export async function findTask(db: Db, id: string, options: { ownerId?: string } = {}): Promise<Task | undefined> {
  const row = await findTaskQuery(db, id, options).executeTakeFirst();
  return row && toTask(row);
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
    const status = statusSql(sql.ref('tasks.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
    query = query.where(sql<boolean>`${status} = ${filter.status}`);
  } else {
    query = query.where('tasks.deleted_at', 'is', null);
  }
  if (filter.after) {
    const { createdAt, id } = filter.after;
    query = query.where((eb) =>
      eb.or([
        eb('tasks.created_at', '<', createdAt),
        eb.and([eb('tasks.created_at', '=', createdAt), eb('tasks.id', '<', id)]),
      ]),
    );
  }
  const rows = await query
    .orderBy('tasks.created_at', 'desc')
    .orderBy('tasks.id', 'desc')
    .limit(filter.limit + 1)
    .execute();
  return { items: rows.slice(0, filter.limit).map(toTask), more: rows.length > filter.limit };
}
