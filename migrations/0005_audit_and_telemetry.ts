import { type Kysely, sql } from 'kysely';

// Every change accounted for: an audit record written in the change's own transaction, and the
// pause attempts that failed (which change nothing, so leave no audit record) for telemetry.
// No literal of the task build reasons appears here: Kysely runs pending migrations in one
// transaction, and on a fresh database 0002 adds those enum values in that same transaction.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TYPE audit_actor_kind AS ENUM ('user', 'system')`.execute(db);
  await sql`
    CREATE TABLE audit_logs (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      actor_kind audit_actor_kind NOT NULL,
      actor_id UUID REFERENCES users (id) ON DELETE SET NULL,
      action TEXT NOT NULL CHECK (action ~ '^[a-z_]+\\.[a-z_]+$'),
      resource_type TEXT NOT NULL CHECK (resource_type ~ '^[a-z_]+$'),
      resource_id UUID,
      build_reason build_reason,
      request_id TEXT CHECK (length(request_id) <= 128),
      ip_address INET,
      user_agent TEXT CHECK (length(user_agent) <= 512),
      diff JSONB NOT NULL DEFAULT '{}'::jsonb,
      CHECK (actor_kind = 'user' OR actor_id IS NULL)
    )`.execute(db);
  await sql`COMMENT ON TABLE audit_logs IS 'One record per change, written in the same transaction as the change'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN audit_logs.diff IS 'What changed: {"field": {"from": ..., "to": ...}} and facts of the change'`.execute(
    db,
  );
  // Newest first by id, under each filter audit.list offers; occurred_at serves time ranges and retention.
  await sql`CREATE INDEX audit_logs_occurred_at_idx ON audit_logs (occurred_at)`.execute(db);
  await sql`CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_action_idx ON audit_logs (action, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_build_reason_idx ON audit_logs (build_reason, id DESC) WHERE build_reason IS NOT NULL`.execute(
    db,
  );

  await sql`CREATE TYPE pause_failure_cause AS ENUM ('agent_down', 'garbage', 'too_large', 'conflict')`.execute(db);
  await sql`
    CREATE TABLE task_pause_failures (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      task_id UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
      reason build_reason NOT NULL,
      cause pause_failure_cause NOT NULL,
      detail TEXT NOT NULL CHECK (length(detail) <= 2000)
    )`.execute(db);
  await sql`COMMENT ON TABLE task_pause_failures IS 'Pause attempts that failed and changed nothing, by cause, for telemetry'`.execute(
    db,
  );
  await sql`CREATE INDEX task_pause_failures_occurred_at_idx ON task_pause_failures (occurred_at)`.execute(db);
  await sql`CREATE INDEX workspace_builds_created_at_idx ON workspace_builds (created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX workspace_builds_created_at_idx`.execute(db);
  await sql`DROP TABLE task_pause_failures`.execute(db);
  await sql`DROP TYPE pause_failure_cause`.execute(db);
  await sql`DROP TABLE audit_logs`.execute(db);
  await sql`DROP TYPE audit_actor_kind`.execute(db);
}
