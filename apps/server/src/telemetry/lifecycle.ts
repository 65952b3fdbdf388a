import { sql } from 'kysely';
import type { Db } from '../db/connection.ts';
import type { BuildReason, PauseFailureCause, WorkspaceTransition } from '../db/schema.ts';

export const telemetryBuckets = ['minute', 'hour', 'day', 'week'] as const;
export type TelemetryBucket = (typeof telemetryBuckets)[number];

export type Percentiles = {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
};

export type LifecycleBucket = {
  start: Date;
  /** Builds created in the bucket, by transition and reason: the task reasons apart from the ordinary ones. */
  builds: Array<{ transition: WorkspaceTransition; reason: BuildReason; count: number }>;
  /** Seconds from a task's pause to its resume, for resumes in the bucket. */
  pausedSeconds: Percentiles;
  /** Seconds from the agent's last `running` to its auto-pause, for auto-pauses in the bucket. */
  idleBeforeAutoPauseSeconds: Percentiles;
  /** Size of the snapshots taken by pauses in the bucket. */
  snapshotBytes: Percentiles;
  snapshotMessages: Percentiles;
  /** Pause attempts that failed, by cause. */
  pauseFailures: Partial<Record<PauseFailureCause, number>>;
};

type Range = { since: Date; until: Date; bucket: TelemetryBucket };

/**
 * Lifecycle telemetry per time bucket, computed in PostgreSQL from the builds, the audit log (which
 * keeps each pause's snapshot size and idle time after the snapshot itself is overwritten) and the
 * recorded pause failures.
 */
export async function lifecycleTelemetry(db: Db, range: Range): Promise<LifecycleBucket[]> {
  const [builds, paused, idle, snapshots, failures] = await Promise.all([
    buildCounts(db, range),
    pausedDurations(db, range),
    auditPercentiles(
      db,
      range,
      sql`diff->>'idleSeconds'`,
      sql`build_reason = 'task_auto_pause' AND diff->>'idleSeconds' IS NOT NULL`,
    ),
    snapshotSizes(db, range),
    pauseFailures(db, range),
  ]);
  const buckets = new Map<number, LifecycleBucket>();
  const at = (start: Date) => {
    const key = new Date(start).getTime();
    let bucket = buckets.get(key);
    if (!bucket) {
      bucket = {
        start: new Date(key),
        builds: [],
        pausedSeconds: emptyPercentiles(),
        idleBeforeAutoPauseSeconds: emptyPercentiles(),
        snapshotBytes: emptyPercentiles(),
        snapshotMessages: emptyPercentiles(),
        pauseFailures: {},
      };
      buckets.set(key, bucket);
    }
    return bucket;
  };
  for (const row of builds)
    at(row.bucket).builds.push({ transition: row.transition, reason: row.reason, count: Number(row.count) });
  for (const row of paused) at(row.bucket).pausedSeconds = percentiles(row);
  for (const row of idle) at(row.bucket).idleBeforeAutoPauseSeconds = percentiles(row);
  for (const row of snapshots) {
    at(row.bucket).snapshotBytes = percentiles(row);
    at(row.bucket).snapshotMessages = percentiles(row.messages);
  }
  for (const row of failures) at(row.bucket).pauseFailures[row.cause] = Number(row.count);
  return [...buckets.values()].sort((a, b) => a.start.getTime() - b.start.getTime());
}

type PercentileRow = {
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

function buildCounts(db: Db, { since, until, bucket }: Range) {
  return sql<{ bucket: Date; transition: WorkspaceTransition; reason: BuildReason; count: string }>`
    SELECT date_trunc(${bucket}, created_at) AS bucket, transition, reason, count(*) AS count
    FROM workspace_builds
    WHERE created_at >= ${since} AND created_at < ${until}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
    .execute(db)
    .then((r) => r.rows);
}

/** Pause-to-resume time: each task_resume build and the stop build just before it. */
function pausedDurations(db: Db, { since, until, bucket }: Range) {
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
  { since, until, bucket }: Range,
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

async function snapshotSizes(db: Db, range: Range) {
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

function pauseFailures(db: Db, { since, until, bucket }: Range) {
  return sql<{ bucket: Date; cause: PauseFailureCause; count: string }>`
    SELECT date_trunc(${bucket}, occurred_at) AS bucket, cause, count(*) AS count
    FROM task_pause_failures
    WHERE occurred_at >= ${since} AND occurred_at < ${until}
    GROUP BY 1, 2 ORDER BY 1, 2`
    .execute(db)
    .then((r) => r.rows);
}

function percentiles(row: Omit<PercentileRow, 'bucket'> & { bucket?: Date }): Percentiles {
  const num = (v: number | null) => (v === null ? null : Number(v));
  return { count: Number(row.count), p50: num(row.p50), p90: num(row.p90), p99: num(row.p99), max: num(row.max) };
}

function emptyPercentiles(): Percentiles {
  return { count: 0, p50: null, p90: null, p99: null, max: null };
}
