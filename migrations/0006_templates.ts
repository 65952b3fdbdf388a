import { type Kysely, sql } from 'kysely';

// Workspaces that really stop and start: a task built from a template runs its agent through a
// driver (a local process, or the user's own commands), and the agent's URL is an output of the
// start build rather than something the caller gives. Tasks created with an agentUrl stay as they
// were ("external": their builds complete at once).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE templates (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      name TEXT NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
      version INTEGER NOT NULL CHECK (version > 0),
      driver TEXT NOT NULL CHECK (driver ~ '^[a-z][a-z0-9_-]{0,31}$'),
      settings JSONB NOT NULL DEFAULT '{}'::jsonb,
      parameters JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(parameters) = 'array'),
      idle_timeout_seconds INTEGER CHECK (idle_timeout_seconds > 0),
      pre_pause_notice JSONB,
      description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
      created_by UUID REFERENCES users (id) ON DELETE SET NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      archived_at TIMESTAMPTZ,
      UNIQUE (name, version)
    )`.execute(db);
  await sql`COMMENT ON TABLE templates IS 'Workspace definitions: each update is a new version row; a task keeps the version it was created from'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN templates.parameters IS 'Declared parameters: [{"name", "description", "default", "required", "pattern"}]'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN templates.pre_pause_notice IS 'Sent to the agent before a pause''s snapshot: {"message", "waitSeconds"}'`.execute(
    db,
  );
  await sql`
    ALTER TABLE tasks
      ADD COLUMN template_id UUID REFERENCES templates (id),
      ADD COLUMN parameters JSONB NOT NULL DEFAULT '{}'::jsonb,
      ALTER COLUMN agent_url DROP NOT NULL`.execute(db);
  await sql`COMMENT ON COLUMN tasks.agent_url IS 'Base URL of the AgentAPI server of the task''s agent: given at creation, or the output of its latest successful start build'`.execute(
    db,
  );
  await sql`ALTER TABLE tasks ADD CONSTRAINT tasks_agent_or_template CHECK (agent_url IS NOT NULL OR template_id IS NOT NULL)`.execute(
    db,
  );
  await sql`
    ALTER TABLE workspace_builds
      ADD COLUMN template_id UUID REFERENCES templates (id),
      ADD COLUMN outputs JSONB`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.template_id IS 'The template version the build ran with; NULL for an external workspace'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN workspace_builds.outputs IS 'What the provisioner reported when the job succeeded (a start: {"agentUrl": ...})'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workspace_builds DROP COLUMN outputs, DROP COLUMN template_id`.execute(db);
  await sql`ALTER TABLE tasks DROP CONSTRAINT tasks_agent_or_template`.execute(db);
  await sql`DELETE FROM tasks WHERE agent_url IS NULL`.execute(db);
  await sql`ALTER TABLE tasks DROP COLUMN parameters, DROP COLUMN template_id, ALTER COLUMN agent_url SET NOT NULL`.execute(
    db,
  );
  await sql`DROP TABLE templates`.execute(db);
}
