import type { App } from '../app.ts';
import type { PauseFailureCause } from '../db/pause-failures.ts';
import {
  buildCounts,
  idleBeforeAutoPause,
  type PercentileRow,
  pausedDurations,
  pauseFailures,
  snapshotSizes,
  type TelemetryRange,
} from '../db/telemetry.ts';
import type { BuildReason, WorkspaceTransition } from '../domain/lifecycle.ts';

export { telemetryBuckets } from '../db/telemetry.ts';

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

/**
 * Lifecycle telemetry per time bucket, computed in PostgreSQL from the builds, the audit log (which
 * keeps each pause's snapshot size and idle time after the snapshot itself is overwritten) and the
 * recorded pause failures.
 */
export async function lifecycleTelemetry(app: Pick<App, 'reads'>, range: TelemetryRange): Promise<LifecycleBucket[]> {
  const db = app.reads();
  const [builds, paused, idle, snapshots, failures] = await Promise.all([
    buildCounts(db, range),
    pausedDurations(db, range),
    idleBeforeAutoPause(db, range),
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

function percentiles(row: Omit<PercentileRow, 'bucket'> & { bucket?: Date }): Percentiles {
  const num = (v: number | null) => (v === null ? null : Number(v));
  return { count: Number(row.count), p50: num(row.p50), p90: num(row.p90), p99: num(row.p99), max: num(row.max) };
}

function emptyPercentiles(): Percentiles {
  return { count: 0, p50: null, p90: null, p99: null, max: null };
}
