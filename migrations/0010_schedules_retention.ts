import { type Kysely, sql } from 'kysely';

// Lifecycle policies the service applies on its own: schedules (windows of local time in which a
// task may run; outside them it is paused, and at a window's start the tasks the schedule paused
// that have queued messages are resumed) and the retention of paused tasks (deleted after N days).
// Each occasion (a boundary of a task's schedule, a warning, a retention delete) is claimed once,
// so several server processes act on it once.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE templates
      ADD COLUMN schedule JSONB,
      ADD COLUMN paused_retention_days INTEGER CHECK (paused_retention_days >= 0)`.execute(db);
  await sql`COMMENT ON COLUMN templates.schedule IS 'When its tasks may run: {"timeZone", "windows": [{"days", "start", "end"}]}; NULL: always'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN templates.paused_retention_days IS 'Its tasks paused longer than this are deleted; 0: never; NULL: the service default'`.execute(
    db,
  );
  await sql`ALTER TABLE tasks ADD COLUMN schedule JSONB`.execute(db);
  await sql`COMMENT ON COLUMN tasks.schedule IS 'The task''s own schedule, in place of its template''s; NULL: its template''s (or none)'`.execute(
    db,
  );
  await sql`
    CREATE TABLE task_policy_occasions (
      task_id UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
      occasion TEXT NOT NULL CHECK (occasion IN ('schedule_pause', 'schedule_resume', 'schedule_pause_warning', 'retention_warning')),
      due_at TIMESTAMPTZ NOT NULL,
      build_id UUID REFERENCES workspace_builds (id) ON DELETE SET NULL,
      claimed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      PRIMARY KEY (task_id, occasion, due_at)
    )`.execute(db);
  await sql`COMMENT ON TABLE task_policy_occasions IS 'Occasions a policy acted on, each once across server processes: the claim is the primary key'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_policy_occasions.occasion IS 'schedule_pause, schedule_resume, schedule_pause_warning or retention_warning'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_policy_occasions.due_at IS 'The boundary of the schedule, or the retention delete''s time, the occasion is for'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_policy_occasions.build_id IS 'The build the action queued (a schedule pause''s stop: the task is paused by the schedule while it is the latest)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_policy_occasions.claimed_at IS 'When a server process claimed the occasion'`.execute(
    db,
  );
  await sql`CREATE INDEX task_policy_occasions_build_idx ON task_policy_occasions (build_id) WHERE build_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX task_policy_occasions_due_idx ON task_policy_occasions (due_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE task_policy_occasions`.execute(db);
  await sql`ALTER TABLE tasks DROP COLUMN schedule`.execute(db);
  await sql`ALTER TABLE templates DROP COLUMN paused_retention_days, DROP COLUMN schedule`.execute(db);
}
