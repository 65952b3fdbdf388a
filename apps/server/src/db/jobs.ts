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
export async function acquireJob(db: Db, holder: JobHolder, filter: JobFilter = {}): Promise<AcquiredJob | null> {
  const row = await db
    .updateTable('workspace_builds')
    .set({
      job_status: 'running',
      started_at: sql`NOW()`,
      heartbeat_at: sql`NOW()`,
      provisioner_id: holder.name,
      provisioner_key_id: holder.keyId,
      job_attempts: sql`job_attempts + 1`,
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
  return row ? { build: toBuild(row), attempt: row.job_attempts } : null;
}

/** A job just taken, and which claim of it this is: above 1, an earlier holder went silent while it ran. */
export type AcquiredJob = { build: Build; attempt: number };

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

/**
 * The running job `buildId`, held by `holder` when one is given (by its key, or a keyless holder by
 * name), and in its claim `attempt` when one is given: a holder that fell silent, whose job was
 * handed out again (maybe to the same key), cannot act on the new claim.
 */
function heldBy(holder: JobHolder | undefined, attempt?: number) {
  return (eb: ExpressionBuilder<Database, 'workspace_builds'>) => {
    const running =
      attempt === undefined
        ? eb('job_status', '=', 'running')
        : eb.and([eb('job_status', '=', 'running'), eb('job_attempts', '=', attempt)]);
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

/** A job back in the queue: pending, held by no one. */
const unheld = {
  job_status: 'pending',
  started_at: null,
  heartbeat_at: null,
  provisioner_id: null,
  provisioner_key_id: null,
} as const;

/**
 * Gives a job `holder` has just acquired back to the queue (pending, held by no one), unless its
 * holder has sent a heartbeat since (`heartbeat_at` is still the acquisition's `started_at`): a
 * job whose answer never reached its provisioner, so the claim does not count as an attempt.
 * Undefined when it was not given back.
 */
export async function releaseAcquiredJob(db: Db, buildId: string, holder: JobHolder): Promise<Build | undefined> {
  const row = await db
    .updateTable('workspace_builds')
    .set({ ...unheld, job_attempts: sql`GREATEST(job_attempts - 1, 0)` })
    .where('id', '=', buildId)
    .where(heldBy(holder))
    .where('provisioner_id', '=', holder.name)
    .whereRef('heartbeat_at', '=', 'started_at')
    .returningAll()
    .executeTakeFirst();
  return row && toBuild(row);
}

/** Records a sign of life on a running job; false when the job is not running (or not `holder`'s, in claim `attempt`). */
export async function heartbeatJob(db: Db, buildId: string, holder?: JobHolder, attempt?: number): Promise<boolean> {
  const result = await db
    .updateTable('workspace_builds')
    .set({ heartbeat_at: sql`NOW()` })
    .where('id', '=', buildId)
    .where(heldBy(holder, attempt))
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Ends a running job, succeeded or failed with `error`; undefined when it is not running (or not `holder`'s). */
export async function completeJob(
  trx: Db,
  buildId: string,
  outcome: { error?: string; holder?: JobHolder; attempt?: number; outputs?: Record<string, unknown> },
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
    .where(heldBy(outcome.holder, outcome.attempt))
    .returningAll()
    .executeTakeFirst();
  return row && toJobRow(row);
}

function toJobRow(row: BuildRow): JobRow {
  return { build: toBuild(row), provisionerId: row.provisioner_id, provisionerKeyId: row.provisioner_key_id };
}

/** What the stale-job loop did with the running jobs whose provisioner went silent. */
type StaleJobs = {
  /** Handed out again: pending, held by no one, their next holder told it is a retry. */
  requeued: JobRow[];
  /** Failed: they had had `maxAttempts` holders, each gone silent. */
  failed: JobRow[];
};

/**
 * Ends the claims of running jobs whose provisioner has been silent longer than `staleAfterMs`
 * (it crashed, was killed, or lost the server): a job acquired fewer than `maxAttempts` times goes
 * back to the queue, so a crash Hiatus can recover from costs a retry, not the task; the others
 * fail. Each row changes once, whichever process's loop gets there first (the UPDATEs lock it).
 */
export async function endStaleJobs(trx: Db, staleAfterMs: number, maxAttempts: number): Promise<StaleJobs> {
  // Locked first, so the holder's name is at hand and a heartbeat racing the loop waits, then finds the job gone.
  const stale = await trx
    .selectFrom('workspace_builds as b')
    .selectAll('b')
    .select((eb) =>
      eb
        .exists(
          eb
            .selectFrom('workspace_builds as later')
            .select('later.id')
            .whereRef('later.workspace_id', '=', 'b.workspace_id')
            .whereRef('later.build_number', '>', 'b.build_number'),
        )
        .as('superseded'),
    )
    .where('b.job_status', '=', 'running')
    .where('b.heartbeat_at', '<', sql<Date>`NOW() - make_interval(secs => ${staleAfterMs / 1000})`)
    .forUpdate('b')
    .skipLocked()
    .execute();
  // A job a later build replaced (a delete queued during a start) is not run again: the later one decides.
  const retry = stale.filter((row) => !row.superseded && row.job_attempts < maxAttempts);
  const fail = stale.filter((row) => !retry.includes(row));
  const requeued = retry.length
    ? await trx
        .updateTable('workspace_builds')
        .set(unheld)
        .where(
          'id',
          'in',
          retry.map((row) => row.id),
        )
        .returningAll()
        .execute()
    : [];
  const failed = fail.length
    ? await trx
        .updateTable('workspace_builds')
        .set({
          job_status: 'failed',
          error: sql`'provisioner ' || provisioner_id || ' stopped sending heartbeats, and the job is not handed out again: '
            || CASE WHEN job_attempts >= ${maxAttempts}
                 THEN job_attempts || ' provisioners took it and each went silent'
                 ELSE 'a later build of its workspace replaced it' END`,
          completed_at: sql`NOW()`,
        })
        .where(
          'id',
          'in',
          fail.map((row) => row.id),
        )
        .returningAll()
        .execute()
    : [];
  const holders = new Map(stale.map((row) => [row.id, row]));
  return {
    // As the silent holder held them: the log names who went silent.
    requeued: requeued.map((row) => {
      const held = holders.get(row.id);
      return {
        build: toBuild(row),
        provisionerId: held?.provisioner_id ?? null,
        provisionerKeyId: held?.provisioner_key_id ?? null,
      };
    }),
    failed: failed.map(toJobRow),
  };
}
