import { type Kysely, sql } from 'kysely';

// audit_logs is append-only and grows without bound; a batched DELETE was its only retention.
// Partitioned by month (UTC) on occurred_at, retention drops whole months instead. The table is
// converted in place: every row keeps its id, and the identity goes on from where it was. The
// primary key must hold the partition key, hence (id, occurred_at); nothing references audit_logs.
// Constraints are named as before (left to PostgreSQL, the names would dodge the old table's).
// Months with records in the last ten years get a partition each, with the current and next month;
// anything else (and later, any month without its partition yet) lands in audit_logs_default, so an
// insert never fails. The server's housekeeping creates each month's partition ahead of time.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audit_logs RENAME TO audit_logs_unpartitioned`.execute(db);
  // The new table's identity takes the name audit_logs_id_seq.
  await sql`ALTER SEQUENCE audit_logs_id_seq RENAME TO audit_logs_unpartitioned_id_seq`.execute(db);
  await sql`
    CREATE TABLE audit_logs (
      id BIGINT GENERATED ALWAYS AS IDENTITY,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      actor_kind audit_actor_kind NOT NULL,
      actor_id UUID CONSTRAINT audit_logs_actor_id_fkey REFERENCES users (id) ON DELETE SET NULL,
      action TEXT NOT NULL CONSTRAINT audit_logs_action_check CHECK (action ~ '^[a-z_]+\\.[a-z_]+$'),
      resource_type TEXT NOT NULL CONSTRAINT audit_logs_resource_type_check CHECK (resource_type ~ '^[a-z_]+$'),
      resource_id UUID,
      build_reason build_reason,
      request_id TEXT CONSTRAINT audit_logs_request_id_check CHECK (length(request_id) <= 128),
      ip_address INET,
      user_agent TEXT CONSTRAINT audit_logs_user_agent_check CHECK (length(user_agent) <= 512),
      diff JSONB NOT NULL DEFAULT '{}'::jsonb,
      CONSTRAINT audit_logs_check CHECK (actor_kind = 'user' OR actor_id IS NULL)
    ) PARTITION BY RANGE (occurred_at)`.execute(db);

  const months = await sql<{ month: string }>`
    SELECT to_char(m, 'YYYY-MM') AS month FROM (
      SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') AS m
      FROM audit_logs_unpartitioned
      WHERE occurred_at >= date_trunc('month', NOW() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - INTERVAL '10 years'
        AND occurred_at < date_trunc('month', NOW() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + INTERVAL '2 months'
      UNION
      SELECT date_trunc('month', NOW() AT TIME ZONE 'UTC') + n * INTERVAL '1 month' FROM generate_series(0, 1) AS n
    ) AS months ORDER BY m`.execute(db);
  for (const { month } of months.rows) {
    const name = `audit_logs_${month.replace('-', '_')}`;
    await sql`
      CREATE TABLE ${sql.id(name)} PARTITION OF audit_logs
      FOR VALUES FROM (${sql.lit(`${month}-01 00:00:00+00`)})
      TO (${sql.lit(`${month}-01 00:00:00+00`)}::timestamptz + INTERVAL '1 month')`.execute(db);
  }
  await sql`CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT`.execute(db);

  await sql`
    INSERT INTO audit_logs
      (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, request_id, ip_address, user_agent, diff)
    OVERRIDING SYSTEM VALUE
    SELECT id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, request_id, ip_address, user_agent, diff
    FROM audit_logs_unpartitioned`.execute(db);
  // Ids go on from the old sequence's position (past ids of rolled-back inserts too), not from max(id).
  await sql`
    SELECT setval(pg_get_serial_sequence('audit_logs', 'id'), last_value, is_called)
    FROM audit_logs_unpartitioned_id_seq`.execute(db);
  await sql`DROP TABLE audit_logs_unpartitioned`.execute(db);

  // Built on every partition after the rows are in, under the names the old indexes had on the parent.
  await sql`ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_pkey PRIMARY KEY (id, occurred_at)`.execute(db);
  await sql`CREATE INDEX audit_logs_occurred_at_idx ON audit_logs (occurred_at)`.execute(db);
  await sql`CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_action_idx ON audit_logs (action, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_build_reason_idx ON audit_logs (build_reason, id DESC) WHERE build_reason IS NOT NULL`.execute(
    db,
  );

  await sql`COMMENT ON TABLE audit_logs IS 'One record per change, written in the same transaction as the change; partitioned by month of occurred_at (UTC): audit_logs_YYYY_MM, and audit_logs_default for months without one'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN audit_logs.diff IS 'What changed: {"field": {"from": ..., "to": ...}} and facts of the change'`.execute(
    db,
  );
  await sql`COMMENT ON TABLE audit_logs_default IS 'Audit records of months that have no partition of their own (yet): far past or future, or written before housekeeping created the month'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE audit_logs RENAME TO audit_logs_partitioned`.execute(db);
  await sql`ALTER SEQUENCE audit_logs_id_seq RENAME TO audit_logs_partitioned_id_seq`.execute(db);
  await sql`ALTER INDEX audit_logs_pkey RENAME TO audit_logs_partitioned_pkey`.execute(db);
  for (const index of ['occurred_at', 'actor', 'resource', 'action', 'build_reason']) {
    await sql`ALTER INDEX ${sql.id(`audit_logs_${index}_idx`)} RENAME TO ${sql.id(`audit_logs_partitioned_${index}_idx`)}`.execute(
      db,
    );
  }
  await sql`
    CREATE TABLE audit_logs (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      actor_kind audit_actor_kind NOT NULL,
      actor_id UUID CONSTRAINT audit_logs_actor_id_fkey REFERENCES users (id) ON DELETE SET NULL,
      action TEXT NOT NULL CONSTRAINT audit_logs_action_check CHECK (action ~ '^[a-z_]+\\.[a-z_]+$'),
      resource_type TEXT NOT NULL CONSTRAINT audit_logs_resource_type_check CHECK (resource_type ~ '^[a-z_]+$'),
      resource_id UUID,
      build_reason build_reason,
      request_id TEXT CONSTRAINT audit_logs_request_id_check CHECK (length(request_id) <= 128),
      ip_address INET,
      user_agent TEXT CONSTRAINT audit_logs_user_agent_check CHECK (length(user_agent) <= 512),
      diff JSONB NOT NULL DEFAULT '{}'::jsonb,
      CONSTRAINT audit_logs_check CHECK (actor_kind = 'user' OR actor_id IS NULL)
    )`.execute(db);
  await sql`
    INSERT INTO audit_logs
      (id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, request_id, ip_address, user_agent, diff)
    OVERRIDING SYSTEM VALUE
    SELECT id, occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, request_id, ip_address, user_agent, diff
    FROM audit_logs_partitioned`.execute(db);
  await sql`
    SELECT setval(pg_get_serial_sequence('audit_logs', 'id'), last_value, is_called)
    FROM audit_logs_partitioned_id_seq`.execute(db);
  await sql`DROP TABLE audit_logs_partitioned`.execute(db);
  await sql`COMMENT ON TABLE audit_logs IS 'One record per change, written in the same transaction as the change'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN audit_logs.diff IS 'What changed: {"field": {"from": ..., "to": ...}} and facts of the change'`.execute(
    db,
  );
  await sql`CREATE INDEX audit_logs_occurred_at_idx ON audit_logs (occurred_at)`.execute(db);
  await sql`CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_id, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_action_idx ON audit_logs (action, id DESC)`.execute(db);
  await sql`CREATE INDEX audit_logs_build_reason_idx ON audit_logs (build_reason, id DESC) WHERE build_reason IS NOT NULL`.execute(
    db,
  );
}
