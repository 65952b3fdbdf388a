import { type Kysely, sql } from 'kysely';

// A log page of a paused task used to make PostgreSQL detoast and decompress the whole snapshot
// (up to 32 MiB) to pick a few messages out of it. task_snapshots keeps the whole history as the
// seed defines it; beside it, written in the same transaction, the same messages cut into pages of
// a bounded size, so a log page reads one or two of them whatever the snapshot's size.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE task_snapshot_pages (
      task_id UUID NOT NULL REFERENCES task_snapshots (task_id) ON DELETE CASCADE,
      first_position INTEGER NOT NULL CHECK (first_position >= 0),
      message_count INTEGER NOT NULL CHECK (message_count > 0),
      messages JSONB NOT NULL CHECK (jsonb_typeof(messages) = 'array'),
      PRIMARY KEY (task_id, first_position)
    )`.execute(db);
  await sql`COMMENT ON TABLE task_snapshot_pages IS 'The messages of each task snapshot in pages of bounded size, written with it, so a log page need not read the whole document'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_snapshot_pages.first_position IS 'Position (from 0) in the snapshot''s messages of this page''s first message'`.execute(
    db,
  );
  // Snapshots taken before: pages of 64 messages, cut by PostgreSQL.
  await sql`
    INSERT INTO task_snapshot_pages (task_id, first_position, message_count, messages)
    SELECT s.task_id, ((m.ordinality - 1) / 64 * 64)::int, count(*)::int, jsonb_agg(m.message ORDER BY m.ordinality)
    FROM task_snapshots s
    CROSS JOIN LATERAL jsonb_array_elements(s.log_snapshot -> 'data' -> 'messages') WITH ORDINALITY AS m (message, ordinality)
    WHERE jsonb_typeof(s.log_snapshot -> 'data' -> 'messages') = 'array'
    GROUP BY s.task_id, (m.ordinality - 1) / 64`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE task_snapshot_pages`.execute(db);
}
