import { type Kysely, sql } from 'kysely';

// Several hosts: a template names the provisioner tags its builds need (such as {"host": "a"}), and
// a job goes only to a provisioner whose tags include them all. A template without tags ({}) goes
// to any provisioner. Matching runs on the few pending jobs (workspace_builds_pending_idx) joined to
// their template by key, so it needs no index of its own.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE templates
      ADD COLUMN provisioner_tags JSONB NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(provisioner_tags) = 'object')`.execute(db);
  await sql`COMMENT ON COLUMN templates.provisioner_tags IS 'The tags a provisioner must have to take its builds: {"name": "value"}; {}: any provisioner'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE templates DROP COLUMN provisioner_tags`.execute(db);
}
