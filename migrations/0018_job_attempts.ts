import { type Kysely, sql } from 'kysely';

// A job whose provisioner went silent (a crash, a SIGKILL) is handed out again instead of failing at
// once, a bounded number of times: the column counts the claims of the job, so the stale-job loop
// knows when to give up, and a provisioner knows that a start may have been half done before it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workspace_builds ADD COLUMN job_attempts INTEGER NOT NULL DEFAULT 0`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.job_attempts IS 'How many times a provisioner has acquired the job; a job whose provisioner went silent is handed out again up to a limit'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workspace_builds DROP COLUMN job_attempts`.execute(db);
}
