import { type ExpressionBuilder, sql } from 'kysely';
import type { ResumeSetting } from '../domain/templates.ts';
import { type Build, type BuildRow, toBuild } from './builds.ts';
import type { Db } from './connection.ts';
import type { DB as Database } from './schema.ts';

/** A build job as the job queue hands it out: the build, and its provisioner (name and key). */
export type JobRow = { build: Build; provisionerId: string | null; provisionerKeyId: string | null };

/**
 * Who holds a job. A provisioner that calls the API is its key (`keyId`): only that key may
 * heartbeat or complete the job, whatever `name` it gives itself (shown in builds, logs and the
 * audit). The built-in provisioner has no key (`keyId` null) and is known by its name.
 */
export type JobHolder = { keyId: string | null; name: string };

/**
 * Which jobs a provisioner takes: by its templates' driver (`external` for none), template name,
 * and its tags: only jobs whose template's `provisioner_tags` are all among them. A provisioner
 * without tags (absent or {}) takes only jobs of untagged templates and of external workspaces.
 */
export type JobFilter = {
  drivers?: readonly string[];
  templates?: readonly string[];
  tags?: Readonly<Record<string, string>>;
};

/**
 * Takes the oldest pending job for `holder` that matches `filter`. `FOR UPDATE SKIP LOCKED`
 * lets many provisioners poll at once: each job goes to exactly one of them. The tags are matched
 * by JSONB containment on the pending jobs' templates (found by key), so a job no provisioner can
 * take only waits, and never holds up the ones behind it.
 */
export async function acquireJob(db: Db, holder: JobHolder, filter: JobFilter = {}): Promise<Build | null> {
  const row = await db
    .updateTable('workspace_builds')
    .set({
      job_status: 'running',
      started_at: sql`NOW()`,
      heartbeat_at: sql`NOW()`,
      provisioner_id: holder.name,
      provisioner_key_id: holder.keyId,
    })
    .where('id', '=', (eb) => {
      let next = eb
        .selectFrom('workspace_builds as b')
        .leftJoin('templates as t', 't.id', 'b.template_id')
        .select('b.id')
        .where('b.job_status', '=', 'pending');
      if (filter.drivers) next = next.where(sql<string>`COALESCE(t.driver, 'external')`, 'in', [...filter.drivers, '']);
      if (filter.templates) next = next.where('t.name', 'in', [...filter.templates, '']);
      const tags = JSON.stringify(filter.tags ?? {});
      next = next.where(sql<boolean>`COALESCE(t.provisioner_tags, '{}'::jsonb) <@ ${tags}::jsonb`);
      return next.orderBy('b.created_at').limit(1).forUpdate(['b']).skipLocked();
    })
    .where('job_status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
  return row ? toBuild(row) : null;
}

/** What a driver needs beside the build: the task, the template version, the last start's outputs. */
export type JobContext = {
  task: { id: string; name: string; prompt: string; parameters: Record<string, string> } | null;
  template: {
    id: string;
    name: string;
    version: number;
    driver: string;
    settings: unknown;
    resume: ResumeSetting | null;
  } | null;
  previousOutputs: Record<string, unknown> | null;
};

export async function findJobContext(db: Db, build: Build): Promise<JobContext> {
  const [task, template, previous] = await Promise.all([
    db
      .selectFrom('tasks')
      .where('workspace_id', '=', build.workspaceId)
      .select(['id', 'name', 'prompt', 'parameters'])
      .executeTakeFirst(),
    build.templateId
      ? db
          .selectFrom('templates')
          .where('id', '=', build.templateId)
          .select(['id', 'name', 'version', 'driver', 'settings', 'resume'])
          .executeTakeFirst()
      : undefined,
    db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', build.workspaceId)
      .where('transition', '=', 'start')
      .where('job_status', '=', 'succeeded')
      .where('id', '!=', build.id)
      .orderBy('build_number', 'desc')
      .limit(1)
      .select('outputs')
      .executeTakeFirst(),
  ]);
  return {
    task: task ? { ...task, parameters: task.parameters as Record<string, string> } : null,
    template: template ? { ...template, resume: template.resume as ResumeSetting | null } : null,
    previousOutputs: (previous?.outputs as Record<string, unknown> | null | undefined) ?? null,
  };
}

/** The running job `buildId`, held by `holder` when one is given (by its key, or a keyless holder by name). */
function heldBy(holder: JobHolder | undefined) {
  return (eb: ExpressionBuilder<Database, 'workspace_builds'>) => {
    const running = eb('job_status', '=', 'running');
    if (!holder) return running;
    if (holder.keyId !== null) return eb.and([running, eb('provisioner_key_id', '=', holder.keyId)]);
    return eb.and([running, eb('provisioner_key_id', 'is', null), eb('provisioner_id', '=', holder.name)]);
  };
}

/** The running job `buildId` if `holder` holds it (any running job without one); undefined otherwise. */
export async function findRunningJob(db: Db, buildId: string, holder?: JobHolder): Promise<Build | undefined> {
  const row = await db
    .selectFrom('workspace_builds')
    .selectAll()
    .where('id', '=', buildId)
    .where(heldBy(holder))
    .executeTakeFirst();
  return row && toBuild(row);
}

/**
 * Gives a job `holder` has just acquired back to the queue (pending, held by no one), unless its
 * holder has sent a heartbeat since (`heartbeat_at` is still the acquisition's `started_at`): a
 * job whose answer never reached its provisioner. Undefined when it was not given back.
 */
export async function releaseAcquiredJob(db: Db, buildId: string, holder: JobHolder): Promise<Build | undefined> {
  const row = await db
    .updateTable('workspace_builds')
    .set({
      job_status: 'pending',
      started_at: null,
      heartbeat_at: null,
      provisioner_id: null,
      provisioner_key_id: null,
    })
    .where('id', '=', buildId)
    .where(heldBy(holder))
    .where('provisioner_id', '=', holder.name)
    .whereRef('heartbeat_at', '=', 'started_at')
    .returningAll()
    .executeTakeFirst();
  return row && toBuild(row);
}

/** Records a sign of life on a running job; false when the job is not running (or not `holder`'s). */
export async function heartbeatJob(db: Db, buildId: string, holder?: JobHolder): Promise<boolean> {
  const result = await db
    .updateTable('workspace_builds')
    .set({ heartbeat_at: sql`NOW()` })
    .where('id', '=', buildId)
    .where(heldBy(holder))
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Ends a running job, succeeded or failed with `error`; undefined when it is not running (or not `holder`'s). */
export async function completeJob(
  trx: Db,
  buildId: string,
  outcome: { error?: string; holder?: JobHolder; outputs?: Record<string, unknown> },
): Promise<JobRow | undefined> {
  const failed = outcome.error !== undefined;
  const outputs = !failed && outcome.outputs ? JSON.stringify(outcome.outputs) : null;
  const row = await trx
    .updateTable('workspace_builds')
    .set({
      job_status: failed ? 'failed' : 'succeeded',
      error: failed ? outcome.error || 'failed without a message' : null,
      outputs,
      completed_at: sql`NOW()`,
    })
    .where('id', '=', buildId)
    .where(heldBy(outcome.holder))
    .returningAll()
    .executeTakeFirst();
  return row && toJobRow(row);
}

function toJobRow(row: BuildRow): JobRow {
  return { build: toBuild(row), provisionerId: row.provisioner_id, provisionerKeyId: row.provisioner_key_id };
}

/** Fails running jobs whose provisioner has been silent longer than `staleAfterMs`. */
export async function failStaleJobs(trx: Db, staleAfterMs: number): Promise<JobRow[]> {
  const rows = await trx
    .updateTable('workspace_builds')
    .set({
      job_status: 'failed',
      error: sql`'provisioner ' || provisioner_id || ' stopped sending heartbeats'`,
      completed_at: sql`NOW()`,
    })
    .where('job_status', '=', 'running')
    .where('heartbeat_at', '<', sql<Date>`NOW() - make_interval(secs => ${staleAfterMs / 1000})`)
    .returningAll()
    .execute();
  return rows.map(toJobRow);
}
