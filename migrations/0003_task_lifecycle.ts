import { type Kysely, sql } from 'kysely';

// What the lifecycle needs beyond the upstream design: build jobs that provisioners acquire and
// keep alive, per-task idle timeouts with the agent's observed activity (shared by every server
// process), and the facts about each snapshot that logs are served from without re-reading it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE workspace_builds
      ADD COLUMN provisioner_id TEXT CHECK (length(provisioner_id) BETWEEN 1 AND 128),
      ADD COLUMN heartbeat_at TIMESTAMPTZ,
      ADD CONSTRAINT workspace_builds_running_is_held
        CHECK (job_status <> 'running' OR (provisioner_id IS NOT NULL AND heartbeat_at IS NOT NULL))`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.provisioner_id IS 'The provisioner that acquired the job'`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.heartbeat_at IS 'Last sign of life from the provisioner running the job'`.execute(
    db,
  );
  // Provisioners look for the oldest pending job, and the reaper for running jobs gone quiet.
  await sql`CREATE INDEX workspace_builds_pending_idx ON workspace_builds (created_at) WHERE job_status = 'pending'`.execute(
    db,
  );
  await sql`CREATE INDEX workspace_builds_running_idx ON workspace_builds (heartbeat_at) WHERE job_status = 'running'`.execute(
    db,
  );

  await sql`
    ALTER TABLE tasks
      ADD COLUMN idle_timeout_seconds INTEGER CHECK (idle_timeout_seconds > 0),
      ADD COLUMN agent_idle_since TIMESTAMPTZ,
      ADD COLUMN agent_last_running_at TIMESTAMPTZ`.execute(db);
  await sql`COMMENT ON COLUMN tasks.idle_timeout_seconds IS 'Idle time after which the task is paused; NULL: the service default'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN tasks.agent_idle_since IS 'Since when the agent has been seen stable or unreachable without a break; NULL while it works'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN tasks.agent_last_running_at IS 'When the agent was last seen running'`.execute(db);

  await sql`CREATE TYPE snapshot_source AS ENUM ('pause', 'push')`.execute(db);
  await sql`
    CREATE TABLE task_snapshot_stats (
      task_id UUID NOT NULL PRIMARY KEY REFERENCES task_snapshots (task_id) ON DELETE CASCADE,
      message_count INTEGER NOT NULL CHECK (message_count >= 0),
      byte_size BIGINT NOT NULL CHECK (byte_size >= 0),
      first_message_id INTEGER CHECK (first_message_id >= 0),
      source snapshot_source NOT NULL,
      CHECK ((message_count = 0) = (first_message_id IS NULL))
    )`.execute(db);
  await sql`COMMENT ON TABLE task_snapshot_stats IS 'Facts about each task snapshot, written with it, so logs and results need not read the whole document'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_snapshot_stats.first_message_id IS 'Id of the first message; ids run on from it one by one, so a page is an index range'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE task_snapshot_stats`.execute(db);
  await sql`DROP TYPE snapshot_source`.execute(db);
  await sql`ALTER TABLE tasks DROP COLUMN idle_timeout_seconds, DROP COLUMN agent_idle_since, DROP COLUMN agent_last_running_at`.execute(
    db,
  );
  await sql`DROP INDEX workspace_builds_running_idx`.execute(db);
  await sql`DROP INDEX workspace_builds_pending_idx`.execute(db);
  await sql`
    ALTER TABLE workspace_builds
      DROP CONSTRAINT workspace_builds_running_is_held,
      DROP COLUMN provisioner_id,
      DROP COLUMN heartbeat_at`.execute(db);
}
