import { type Kysely, sql } from 'kysely';

// What API keys may do: everything their user may (full), only read (a dashboard), push the
// snapshot of one task (its workspace), or run build jobs (a provisioner).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TYPE api_key_scope AS ENUM ('full', 'read', 'workspace', 'provisioner')`.execute(db);
  await sql`
    ALTER TABLE api_keys
      ADD COLUMN scope api_key_scope NOT NULL DEFAULT 'full',
      ADD COLUMN task_id UUID REFERENCES tasks (id) ON DELETE CASCADE,
      ADD CONSTRAINT api_keys_workspace_scope_has_task CHECK ((scope = 'workspace') = (task_id IS NOT NULL))`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN api_keys.task_id IS 'For a workspace key: the task whose workspace holds it'`.execute(db);
  await sql`COMMENT ON COLUMN api_keys.id IS 'Derived from the key''s hash (its first 16 bytes), so a key is found without storing it'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE api_keys DROP CONSTRAINT api_keys_workspace_scope_has_task, DROP COLUMN task_id, DROP COLUMN scope`.execute(
    db,
  );
  await sql`DROP TYPE api_key_scope`.execute(db);
}
