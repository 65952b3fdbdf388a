import { type Kysely, sql } from 'kysely';

// A task's inbox: messages sent while its agent cannot take them (the task is paused or starting,
// or its agent is busy), stored durably and delivered in order, once, when it can. And the
// keep-alive a user sets to hold off auto-pause.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE task_messages (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      task_id UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
      position BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
      status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'cancelled')),
      content TEXT NOT NULL,
      sender_id UUID REFERENCES users (id) ON DELETE SET NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      delivered_at TIMESTAMPTZ,
      cancelled_at TIMESTAMPTZ,
      attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT CHECK (length(last_error) <= 500),
      leased_until TIMESTAMPTZ,
      CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
      CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
    )`.execute(db);
  await sql`COMMENT ON TABLE task_messages IS 'A task''s inbox: messages delivered to its agent in order, once, when it is active and stable (see lifecycle/inbox.ts)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_messages.position IS 'Delivery order: taken under the task''s workspace lock, so it follows commit order per task'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_messages.status IS 'queued (waiting), delivered (the agent took it) or cancelled (it never goes)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_messages.attempts IS 'Deliveries tried: the agent was asked to take the message this many times'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_messages.last_error IS 'Why the last attempt failed, in Hiatus''s own words'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_messages.leased_until IS 'A server process is delivering the message until then; past it, another may try again'`.execute(
    db,
  );
  await sql`CREATE INDEX task_messages_queued_idx ON task_messages (task_id, position) WHERE status = 'queued'`.execute(
    db,
  );
  await sql`ALTER TABLE tasks ADD COLUMN keep_alive_until TIMESTAMPTZ`.execute(db);
  await sql`COMMENT ON COLUMN tasks.keep_alive_until IS 'Auto-pause leaves the task alone until then (tasks.keepAlive); NULL: no keep-alive'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks DROP COLUMN keep_alive_until`.execute(db);
  await sql`DROP TABLE task_messages`.execute(db);
}
