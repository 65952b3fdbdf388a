import type { Selectable } from 'kysely';
import type { BuildReason, JobStatus, WorkspaceTransition } from '../domain/lifecycle.ts';
import type { Db } from './connection.ts';
import type { WorkspaceBuilds } from './schema.ts';
import { nextInSequence } from './sequence.ts';

export type BuildRow = Selectable<WorkspaceBuilds>;

/** A workspace build as the service shows it. */
export type Build = {
  id: string;
  workspaceId: string;
  buildNumber: number;
  transition: WorkspaceTransition;
  reason: BuildReason;
  initiatorId: string | null;
  jobStatus: JobStatus;
  error: string | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
  /** The template version the build ran with; null for an external workspace. */
  templateId: string | null;
  /** What the provisioner reported when the job succeeded (a start: `agentUrl`). */
  outputs: Record<string, unknown> | null;
};

/** The attempts of a job are the job queue's business (db/jobs.ts): a build does not show them. */
export function toBuild(row: Omit<BuildRow, 'job_attempts'>): Build {
  return {
    id: row.id,
    workspaceId: row.workspace_id,
    buildNumber: row.build_number,
    transition: row.transition,
    reason: row.reason,
    initiatorId: row.initiator_id,
    jobStatus: row.job_status,
    error: row.error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    templateId: row.template_id,
    outputs: row.outputs as Record<string, unknown> | null,
  };
}

/**
 * Inserts the workspace's next build, numbered one past its latest. Call it in a transaction
 * that holds the workspace row lock (`lockWorkspace`), so two builds never race for a number.
 */
export async function insertNextBuild(
  trx: Db,
  build: {
    workspaceId: string;
    transition: WorkspaceTransition;
    reason: BuildReason;
    initiatorId: string | null;
    templateId: string | null;
  },
): Promise<Build> {
  const row = await trx
    .insertInto('workspace_builds')
    .values({
      workspace_id: build.workspaceId,
      build_number: nextInSequence('workspace_builds', 'build_number', 'workspace_id', build.workspaceId),
      transition: build.transition,
      reason: build.reason,
      initiator_id: build.initiatorId,
      template_id: build.templateId,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toBuild(row);
}

/** Takes the workspace's row lock for the rest of the transaction: lifecycle changes of one workspace queue here. */
export async function lockWorkspace(trx: Db, workspaceId: string): Promise<void> {
  await trx.selectFrom('workspaces').where('id', '=', workspaceId).select('id').forUpdate().executeTakeFirst();
}

export type BuildPage = { items: Build[]; nextCursor: number | null };

/** A workspace's builds, newest first, paginated by build number. */
export async function listBuilds(
  db: Db,
  workspaceId: string,
  options: { reason?: BuildReason; limit: number; cursor?: number },
): Promise<BuildPage> {
  let query = db.selectFrom('workspace_builds').selectAll().where('workspace_id', '=', workspaceId);
  if (options.reason) query = query.where('reason', '=', options.reason);
  if (options.cursor !== undefined) query = query.where('build_number', '<', options.cursor);
  const rows = await query
    .orderBy('build_number', 'desc')
    .limit(options.limit + 1)
    .execute();
  const items = rows.slice(0, options.limit).map(toBuild);
  return { items, nextCursor: rows.length > options.limit ? (items.at(-1)?.buildNumber ?? null) : null };
}
