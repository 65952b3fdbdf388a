import { sql } from 'kysely';
import { type Build, toBuild } from './builds.ts';
import type { Db } from './connection.ts';

/** A build job as the job queue hands it out: the build, and its provisioner. */
export type JobRow = { build: Build; provisionerId: string | null };

/**
 * Takes the oldest pending job for `provisionerId`. `FOR UPDATE SKIP LOCKED` lets many
 * provisioners poll at once: each job goes to exactly one of them.
 */
export async function acquireJob(db: Db, provisionerId: string): Promise<Build | null> {
  const row = await db
    .updateTable('workspace_builds')
    .set({ job_status: 'running', started_at: sql`NOW()`, heartbeat_at: sql`NOW()`, provisioner_id: provisionerId })
    .where('id', '=', (eb) =>
      eb
        .selectFrom('workspace_builds')
        .select('id')
        .where('job_status', '=', 'pending')
        .orderBy('created_at')
        .limit(1)
        .forUpdate()
        .skipLocked(),
    )
    .where('job_status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
  return row ? toBuild(row) : null;
}

/** Records a sign of life on a running job; false when the job is not running (for that provisioner). */
export async function heartbeatJob(db: Db, buildId: string, provisionerId?: string): Promise<boolean> {
  let query = db
    .updateTable('workspace_builds')
    .set({ heartbeat_at: sql`NOW()` })
    .where('id', '=', buildId)
    .where('job_status', '=', 'running');
  if (provisionerId) query = query.where('provisioner_id', '=', provisionerId);
  const result = await query.executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Ends a running job, succeeded or failed with `error`; undefined when it is not running (for that provisioner). */
export async function completeJob(
  trx: Db,
  buildId: string,
  outcome: { error?: string; provisionerId?: string },
): Promise<JobRow | undefined> {
  const failed = outcome.error !== undefined;
  let query = trx
    .updateTable('workspace_builds')
    .set({
      job_status: failed ? 'failed' : 'succeeded',
      error: failed ? outcome.error || 'failed without a message' : null,
      completed_at: sql`NOW()`,
    })
    .where('id', '=', buildId)
    .where('job_status', '=', 'running');
  if (outcome.provisionerId) query = query.where('provisioner_id', '=', outcome.provisionerId);
  const row = await query.returningAll().executeTakeFirst();
  return row && { build: toBuild(row), provisionerId: row.provisioner_id };
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
  return rows.map((row) => ({ build: toBuild(row), provisionerId: row.provisioner_id }));
}

/** Build ids still queued or running: a provisioner has work left. */
export async function listOpenJobs(db: Db): Promise<string[]> {
  const rows = await db
    .selectFrom('workspace_builds')
    .where('job_status', 'in', ['pending', 'running'])
    .select('id')
    .execute();
  return rows.map((r) => r.id);
}
