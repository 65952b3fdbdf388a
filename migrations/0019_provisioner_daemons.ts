import { type Kysely, sql } from 'kysely';

// The provisioners lately seen asking for jobs, with their tags: a job whose template's tags no
// provisioner seen lately has is said in the log (no provisioner with tags host=c is connected)
// rather than left to wait in silence. One row per name, refreshed by each acquire; rows of names
// not seen for a day are removed. A few rows: the check reads them all, with no index.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE provisioner_daemons (
      name TEXT PRIMARY KEY,
      key_id UUID REFERENCES api_keys (id) ON DELETE CASCADE,
      tags JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
      last_seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);
  await sql`COMMENT ON TABLE provisioner_daemons IS 'Provisioners lately seen asking for jobs, by the name they give, with their tags'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN provisioner_daemons.key_id IS 'The key it asked with; null for the built-in provisioner'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN provisioner_daemons.last_seen_at IS 'Its last acquire, long poll or not'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE provisioner_daemons`.execute(db);
}
