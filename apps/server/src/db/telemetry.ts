import { sql } from 'kysely';
import type { BuildReason, WorkspaceTransition } from '../domain/lifecycle.ts';
import type { Db } from './connection.ts';
import type { PauseFailureCause } from './schema.ts';

export const telemetryBuckets = ['minute', 'hour', 'day', 'week'] as const;
export type TelemetryBucket = (typeof telemetryBuckets)[number];
export type TelemetryRange = { since: Date; until: Date; bucket: TelemetryBucket };

// Lifecycle telemetry's statements: each groups by time bucket inside PostgreSQL.

export type PercentileRow = {
  bucket: Date;
  count: number | string;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
};

const percentileColumns = (value: ReturnType<typeof sql>) => sql`
  count(*) AS count,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY ${value}) AS p50,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY ${value}) AS p90,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY ${value}) AS p99,
  max(${value}) AS max`;

export function buildCounts(db: Db, { since, until, bucket }: TelemetryRange) {
  return sql<{ bucket: Date; transition: WorkspaceTransition; reason: BuildReason; count: string }>`
    SELECT date_trunc(${bucket}, created_at) AS bucket, transition, reason, count(*) AS count
    FROM workspace_builds
    WHERE created_at >= ${since} AND created_at < ${until}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
    .execute(db)
    .then((r) => r.rows);
}

/** Pause-to-resume time: each task_resume build and the stop build just before it. */
export function pausedDurations(db: Db, { since, until, bucket }: TelemetryRange) {
  return sql<PercentileRow>`
    WITH steps AS (
      SELECT created_at, reason, transition,
             lag(COALESCE(completed_at, created_at)) OVER w AS previous_at,
             lag(transition) OVER w AS previous_transition
      FROM workspace_builds
      WINDOW w AS (PARTITION BY workspace_id ORDER BY build_number)
    ), resumes AS (
      SELECT created_at, EXTRACT(EPOCH FROM created_at - previous_at)::float8 AS seconds
      FROM steps
      WHERE reason = 'task_resume' AND previous_transition = 'stop'
        AND created_at >= ${since} AND created_at < ${until}
    )
    SELECT date_trunc(${bucket}, created_at) AS bucket, ${percentileColumns(sql`seconds`)}
    FROM resumes GROUP BY 1 ORDER BY 1`
    .execute(db)
    .then((r) => r.rows);
}

function auditPercentiles(
  db: Db,
  { since, until, bucket }: TelemetryRange,
  value: ReturnType<typeof sql>,
  where: ReturnType<typeof sql>,
) {
  return sql<PercentileRow>`
    SELECT date_trunc(${bucket}, occurred_at) AS bucket, ${percentileColumns(sql`(${value})::float8`)}
    FROM audit_logs
    WHERE action = 'task.pause' AND occurred_at >= ${since} AND occurred_at < ${until} AND ${where}
    GROUP BY 1 ORDER BY 1`
    .execute(db)
    .then((r) => r.rows);
}

export async function snapshotSizes(db: Db, range: TelemetryRange) {
  const taken = sql`diff->'snapshot'->>'taken' = 'true'`;
  const [bytes, messages] = await Promise.all([
    auditPercentiles(db, range, sql`diff->'snapshot'->>'bytes'`, taken),
    auditPercentiles(db, range, sql`diff->'snapshot'->>'messageCount'`, taken),
  ]);
  return bytes.map((row) => ({
    ...row,
    messages: messages.find((m) => new Date(m.bucket).getTime() === new Date(row.bucket).getTime()) ?? row,
  }));
}

export function pauseFailures(db: Db, { since, until, bucket }: TelemetryRange) {
  return sql<{ bucket: Date; cause: PauseFailureCause; count: string }>`
    SELECT date_trunc(${bucket}, occurred_at) AS bucket, cause, count(*) AS count
    FROM task_pause_failures
    WHERE occurred_at >= ${since} AND occurred_at < ${until}
    GROUP BY 1, 2 ORDER BY 1, 2`
    .execute(db)
    .then((r) => r.rows);
}

/** Seconds from the agent's last `running` to its auto-pause, as each auto-pause's audit record keeps them. */
export function idleBeforeAutoPause(db: Db, range: TelemetryRange) {
  return auditPercentiles(
    db,
    range,
    sql`diff->>'idleSeconds'`,
    sql`build_reason = 'task_auto_pause' AND diff->>'idleSeconds' IS NOT NULL`,
  );
}
