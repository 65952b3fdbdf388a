import { type Kysely, sql } from 'kysely';

// The ground every task stands on: people, their keys, workspaces, the builds that start and stop
// them, and the tasks that run inside. The database enforces every rule it can express.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TYPE user_role AS ENUM ('member', 'admin')`.execute(db);
  await sql`CREATE TYPE workspace_transition AS ENUM ('start', 'stop', 'delete')`.execute(db);
  await sql`CREATE TYPE build_reason AS ENUM ('initiator', 'autostart', 'autostop', 'dormancy', 'failedstop', 'autodelete')`.execute(
    db,
  );
  await sql`CREATE TYPE provisioner_job_status AS ENUM ('pending', 'running', 'succeeded', 'failed', 'canceled')`.execute(
    db,
  );

  await sql`
    CREATE TABLE users (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      username TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
      role user_role NOT NULL DEFAULT 'member',
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);

  await sql`
    CREATE TABLE api_keys (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      name TEXT NOT NULL DEFAULT '' CHECK (length(name) <= 128),
      secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      last_used_at TIMESTAMPTZ,
      expires_at TIMESTAMPTZ,
      revoked_at TIMESTAMPTZ,
      CHECK (expires_at IS NULL OR expires_at > created_at)
    )`.execute(db);
  await sql`CREATE INDEX api_keys_user_id_idx ON api_keys (user_id)`.execute(db);
  await sql`COMMENT ON COLUMN api_keys.secret_hash IS 'SHA-256 of the key''s secret part; the secret itself is never stored'`.execute(
    db,
  );

  await sql`
    CREATE TABLE workspaces (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      owner_id UUID NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
      name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);
  await sql`CREATE INDEX workspaces_owner_id_idx ON workspaces (owner_id)`.execute(db);

  await sql`
    CREATE TABLE workspace_builds (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      workspace_id UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
      build_number INTEGER NOT NULL CHECK (build_number > 0),
      transition workspace_transition NOT NULL,
      reason build_reason NOT NULL DEFAULT 'initiator',
      initiator_id UUID REFERENCES users (id) ON DELETE SET NULL,
      job_status provisioner_job_status NOT NULL DEFAULT 'pending',
      error TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      started_at TIMESTAMPTZ,
      completed_at TIMESTAMPTZ,
      UNIQUE (workspace_id, build_number),
      CHECK ((job_status = 'pending') = (started_at IS NULL) OR job_status = 'canceled'),
      CHECK ((job_status IN ('succeeded', 'failed', 'canceled')) = (completed_at IS NOT NULL)),
      CHECK ((job_status = 'failed') = (error IS NOT NULL)),
      CHECK (started_at IS NULL OR started_at >= created_at),
      CHECK (completed_at IS NULL OR completed_at >= COALESCE(started_at, created_at))
    )`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.initiator_id IS 'The user who asked for the build; NULL when the system did'`.execute(
    db,
  );

  // Build numbers are gap-free per workspace: each new build takes exactly the next number.
  // The unique constraint settles two racing inserts; this trigger refuses a number that skips.
  await sql`
    CREATE FUNCTION workspace_builds_gap_free() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      expected INTEGER;
    BEGIN
      SELECT COALESCE(MAX(build_number), 0) + 1 INTO expected
        FROM workspace_builds WHERE workspace_id = NEW.workspace_id;
      IF NEW.build_number <> expected THEN
        RAISE EXCEPTION 'build_number % for workspace % is not the next one (expected %)',
          NEW.build_number, NEW.workspace_id, expected
          USING ERRCODE = 'check_violation';
      END IF;
      RETURN NEW;
    END
    $$`.execute(db);
  await sql`
    CREATE TRIGGER workspace_builds_gap_free BEFORE INSERT ON workspace_builds
    FOR EACH ROW EXECUTE FUNCTION workspace_builds_gap_free()`.execute(db);

  await sql`
    CREATE TABLE tasks (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      owner_id UUID NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
      workspace_id UUID NOT NULL UNIQUE REFERENCES workspaces (id) ON DELETE RESTRICT,
      name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
      prompt TEXT NOT NULL CHECK (length(prompt) <= 100000),
      agent_url TEXT NOT NULL CHECK (agent_url ~ '^https?://[^[:space:]]+$'),
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      deleted_at TIMESTAMPTZ,
      CHECK (deleted_at IS NULL OR deleted_at >= created_at)
    )`.execute(db);
  await sql`CREATE UNIQUE INDEX tasks_owner_name_live_idx ON tasks (owner_id, lower(name)) WHERE deleted_at IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX tasks_created_at_idx ON tasks (created_at DESC, id DESC)`.execute(db);
  await sql`COMMENT ON COLUMN tasks.agent_url IS 'Base URL of the AgentAPI server of the task''s agent'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tasks`.execute(db);
  await sql`DROP TABLE workspace_builds`.execute(db);
  await sql`DROP FUNCTION workspace_builds_gap_free`.execute(db);
  await sql`DROP TABLE workspaces`.execute(db);
  await sql`DROP TABLE api_keys`.execute(db);
  await sql`DROP TABLE users`.execute(db);
  await sql`DROP TYPE provisioner_job_status`.execute(db);
  await sql`DROP TYPE build_reason`.execute(db);
  await sql`DROP TYPE workspace_transition`.execute(db);
  await sql`DROP TYPE user_role`.execute(db);
}
