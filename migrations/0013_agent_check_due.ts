import { type Kysely, sql } from 'kysely';

// The auto-pause pass used to ask every active agent on every pass of every server process, so R
// processes asked each agent R times an interval. Now each task carries when its agent is next due
// to be asked; a pass claims due tasks (FOR UPDATE SKIP LOCKED) and moves that time on by the
// interval, so the processes share the work and each agent is asked about once an interval.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks ADD COLUMN agent_check_due_at TIMESTAMPTZ`.execute(db);
  await sql`COMMENT ON COLUMN tasks.agent_check_due_at IS 'When the auto-pause pass next asks the agent for its status; null: at the next pass'`.execute(
    db,
  );
  await sql`CREATE INDEX tasks_agent_check_due_idx ON tasks (agent_check_due_at NULLS FIRST) WHERE deleted_at IS NULL`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX tasks_agent_check_due_idx`.execute(db);
  await sql`ALTER TABLE tasks DROP COLUMN agent_check_due_at`.execute(db);
}
