import { type Kysely, sql } from 'kysely';

// As the upstream design did: a table for the last snapshot of each task's conversation, taken
// before its workspace stops, and the three build reasons that tell task lifecycle apart.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE task_snapshots (
      task_id UUID NOT NULL PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
      log_snapshot JSONB NOT NULL,
      log_snapshot_created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);
  await sql`COMMENT ON TABLE task_snapshots IS 'The last snapshot of each task''s conversation history, taken when the task was paused so its log stays readable while the workspace is stopped'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_snapshots.task_id IS 'The task the snapshot belongs to; one snapshot per task, removed with the task'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_snapshots.log_snapshot IS 'The conversation in a versioned envelope: {"format": "agentapi", "data": {"messages": [...]}}'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_snapshots.log_snapshot_created_at IS 'When the snapshot was taken; overwritten on every pause'`.execute(
    db,
  );

  // ADD VALUE may run inside a transaction, but the new values cannot be used until it commits:
  // nothing in this migration uses them.
  await sql`ALTER TYPE build_reason ADD VALUE IF NOT EXISTS 'task_auto_pause'`.execute(db);
  await sql`ALTER TYPE build_reason ADD VALUE IF NOT EXISTS 'task_manual_pause'`.execute(db);
  await sql`ALTER TYPE build_reason ADD VALUE IF NOT EXISTS 'task_resume'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The build_reason values stay: PostgreSQL cannot drop a value from an enum, and builds
  // recorded with them must keep their reason.
  await sql`DROP TABLE task_snapshots`.execute(db);
}
