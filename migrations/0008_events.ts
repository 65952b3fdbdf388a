import { type Kysely, sql } from 'kysely';

// Lifecycle events as a transactional outbox: each change writes its events in its own
// transaction, webhook deliveries are fanned out in that same transaction, and delivery workers in
// any server process claim due deliveries with SKIP LOCKED.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE task_events (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      type TEXT NOT NULL CHECK (type ~ '^[a-z_]+\\.[a-z_]+$'),
      task_id UUID,
      owner_id UUID NOT NULL,
      payload JSONB NOT NULL DEFAULT '{}'::jsonb,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);
  await sql`COMMENT ON TABLE task_events IS 'Lifecycle events, written in the transaction of the change; ids follow commit order (see db/events.ts)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN task_events.task_id IS 'No foreign key: an event outlives a purged task until retention removes it'`.execute(
    db,
  );
  await sql`CREATE INDEX task_events_task_idx ON task_events (task_id, id)`.execute(db);
  await sql`CREATE INDEX task_events_owner_idx ON task_events (owner_id, id)`.execute(db);
  await sql`CREATE INDEX task_events_occurred_at_idx ON task_events (occurred_at)`.execute(db);

  await sql`
    CREATE TABLE webhooks (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      owner_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      all_tasks BOOLEAN NOT NULL DEFAULT FALSE,
      url TEXT NOT NULL CHECK (length(url) <= 2048),
      event_types TEXT[] NOT NULL DEFAULT '{}',
      secret TEXT NOT NULL,
      description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 500),
      enabled BOOLEAN NOT NULL DEFAULT TRUE,
      failing_since TIMESTAMPTZ,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`.execute(db);
  await sql`COMMENT ON COLUMN webhooks.all_tasks IS 'An admin''s endpoint: events of every task, not only the owner''s'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN webhooks.event_types IS 'The event types sent; empty means all'`.execute(db);
  await sql`COMMENT ON COLUMN webhooks.secret IS 'HMAC-SHA256 signing key, shown to the owner once at creation'`.execute(
    db,
  );
  await sql`CREATE INDEX webhooks_owner_idx ON webhooks (owner_id)`.execute(db);

  await sql`CREATE TYPE webhook_delivery_status AS ENUM ('pending', 'delivered', 'failed')`.execute(db);
  await sql`
    CREATE TABLE webhook_deliveries (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      webhook_id UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
      event_id BIGINT NOT NULL REFERENCES task_events (id) ON DELETE CASCADE,
      task_id UUID,
      status webhook_delivery_status NOT NULL DEFAULT 'pending',
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      leased_until TIMESTAMPTZ,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      delivered_at TIMESTAMPTZ,
      UNIQUE (webhook_id, event_id)
    )`.execute(db);
  await sql`COMMENT ON TABLE webhook_deliveries IS 'One event for one endpoint: at least once, in order per (endpoint, task)'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN webhook_deliveries.leased_until IS 'A worker holds the delivery until then; past it, another may take it again'`.execute(
    db,
  );
  await sql`CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'`.execute(
    db,
  );
  await sql`CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (webhook_id, task_id, event_id) WHERE status = 'pending'`.execute(
    db,
  );
  await sql`CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id)`.execute(db);

  await sql`
    CREATE TABLE webhook_delivery_attempts (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
      attempted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      status_code INTEGER,
      duration_ms INTEGER NOT NULL,
      error TEXT CHECK (length(error) <= 500)
    )`.execute(db);
  await sql`CREATE INDEX webhook_delivery_attempts_delivery_idx ON webhook_delivery_attempts (delivery_id, id)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE webhook_delivery_attempts`.execute(db);
  await sql`DROP TABLE webhook_deliveries`.execute(db);
  await sql`DROP TYPE webhook_delivery_status`.execute(db);
  await sql`DROP TABLE webhooks`.execute(db);
  await sql`DROP TABLE task_events`.execute(db);
}
