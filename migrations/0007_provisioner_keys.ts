import { type Kysely, sql } from 'kysely';

// A provisioner is who its key says it is: the job queue records the key that acquired a job, and
// only that key may heartbeat or complete it. The name a provisioner gives itself (provisioner_id)
// stays, for people reading builds and logs.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE workspace_builds
      ADD COLUMN provisioner_key_id UUID REFERENCES api_keys (id) ON DELETE SET NULL`.execute(db);
  await sql`COMMENT ON COLUMN workspace_builds.provisioner_key_id IS 'The API key that acquired the job: the provisioner''s identity; null for the built-in provisioner'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN workspace_builds.provisioner_id IS 'The name the provisioner that acquired the job gives itself, for display'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`COMMENT ON COLUMN workspace_builds.provisioner_id IS 'The provisioner that acquired the job'`.execute(db);
  await sql`ALTER TABLE workspace_builds DROP COLUMN provisioner_key_id`.execute(db);
}
