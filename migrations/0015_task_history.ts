import { type Kysely, sql } from 'kysely';

// A task's history across pauses. task_snapshots keeps, as the seed defines it, the latest snapshot
// of each task. Every agent lifetime (one start of the task's workspace, one agent) before the
// latest one is kept beside it as a segment of the task's history, in pages like task_snapshot_pages,
// so a log page reads the one or two pages that hold it whatever the number or size of segments.
// Positions number the messages of the whole history, oldest first, and never change: a dropped
// segment leaves a gap at the start rather than renumbering what follows. They are BIGINT: the first
// segment starts at its agent's first message id, which may be as high as 2^31 - 1.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE task_history_segments (
      task_id UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
      segment INTEGER NOT NULL CHECK (segment >= 1),
      first_position BIGINT NOT NULL CHECK (first_position >= 0),
      message_count INTEGER NOT NULL CHECK (message_count >= 0),
      overlap INTEGER NOT NULL CHECK (overlap >= 0),
      byte_size BIGINT NOT NULL CHECK (byte_size >= 0),
      conversation_length INTEGER NOT NULL CHECK (conversation_length >= 0),
      conversation_hash TEXT,
      history_length INTEGER,
      history_hash TEXT,
      start_build_id UUID,
      agent_url TEXT,
      started_at TIMESTAMPTZ,
      paused_at TIMESTAMPTZ NOT NULL,
      source snapshot_source NOT NULL,
      PRIMARY KEY (task_id, segment),
      CHECK (conversation_length = overlap + message_count)
    )`.execute(db);
  await sql`CREATE INDEX task_history_segments_position_idx ON task_history_segments (task_id, first_position)`.execute(
    db,
  );
  await sql`COMMENT ON TABLE task_history_segments IS 'The earlier agent lifetimes of each task: the snapshot each one''s agent left, kept when a later agent''s snapshot replaced it in task_snapshots'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.segment IS 'The agent lifetime, numbered from 1 for the task''s first agent'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.first_position IS 'Position in the task''s whole history of the segment''s first kept message'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.overlap IS 'Leading messages of the agent''s conversation not kept: they repeat the previous lifetime''s conversation (an agent that keeps its own history)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.byte_size IS 'Bytes of the kept messages as JSON: what the history''s bound counts'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.conversation_hash IS 'SHA-256 over the role and content of every message of the agent''s conversation, to recognise it repeated by the next agent'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.history_hash IS 'A SHA-256 chain over the role and content of every message the history shows up to this segment''s end (history_length of them), to recognise the whole history replayed by a later agent'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_segments.start_build_id IS 'The start build whose agent this was (no foreign key: builds go with the task anyway)'`.execute(
    db,
  );

  await sql`
    CREATE TABLE task_history_pages (
      task_id UUID NOT NULL,
      segment INTEGER NOT NULL,
      first_position INTEGER NOT NULL CHECK (first_position >= 0),
      message_count INTEGER NOT NULL CHECK (message_count > 0),
      messages JSONB NOT NULL CHECK (jsonb_typeof(messages) = 'array'),
      PRIMARY KEY (task_id, segment, first_position),
      FOREIGN KEY (task_id, segment) REFERENCES task_history_segments (task_id, segment) ON DELETE CASCADE
    )`.execute(db);
  await sql`COMMENT ON TABLE task_history_pages IS 'The messages of each kept segment in pages of bounded size, copied from task_snapshot_pages when the segment was kept'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_history_pages.first_position IS 'Position (from 0) in the agent''s conversation of this page''s first message, as in task_snapshot_pages'`.execute(
    db,
  );

  await sql`
    CREATE TABLE task_snapshot_segments (
      task_id UUID NOT NULL PRIMARY KEY REFERENCES task_snapshots (task_id) ON DELETE CASCADE,
      segment INTEGER NOT NULL CHECK (segment >= 1),
      first_position BIGINT NOT NULL CHECK (first_position >= 0),
      overlap INTEGER NOT NULL CHECK (overlap >= 0),
      kept_bytes BIGINT NOT NULL CHECK (kept_bytes >= 0),
      conversation_hash TEXT,
      history_length INTEGER,
      history_hash TEXT,
      start_build_id UUID,
      agent_url TEXT,
      started_at TIMESTAMPTZ
    )`.execute(db);
  await sql`COMMENT ON TABLE task_snapshot_segments IS 'Where the latest snapshot (task_snapshots) sits in the task''s history: its segment, its agent lifetime and the messages it repeats'`.execute(
    db,
  );

  // Snapshots taken before: the first segment of their task, of the agent of the last start before them.
  await sql`
    INSERT INTO task_snapshot_segments (task_id, segment, first_position, overlap, kept_bytes, start_build_id, started_at)
    SELECT s.task_id, 1, COALESCE(st.first_message_id, 0), 0,
           COALESCE(st.byte_size, octet_length(s.log_snapshot::text)), b.id, b.completed_at
    FROM task_snapshots s
    JOIN tasks t ON t.id = s.task_id
    LEFT JOIN task_snapshot_stats st ON st.task_id = s.task_id
    LEFT JOIN LATERAL (
      SELECT id, completed_at FROM workspace_builds
      WHERE workspace_id = t.workspace_id AND transition = 'start' AND job_status = 'succeeded'
        AND completed_at <= s.log_snapshot_created_at
      ORDER BY build_number DESC LIMIT 1
    ) b ON true`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE task_snapshot_segments`.execute(db);
  await sql`DROP TABLE task_history_pages`.execute(db);
  await sql`DROP TABLE task_history_segments`.execute(db);
}
