import { useQuery } from '@tanstack/react-query';
import { type ReactElement, useId, useMemo, useState } from 'react';
import { useTRPC } from '../api.ts';
import { Lines, StackedBars } from '../charts.tsx';
import { formatBytes, formatSeconds } from '../format.ts';
import { refusalSentence } from '../refusals.ts';
import type { LifecycleBucket } from '../types.ts';

const hourMs = 3_600_000;
const dayMs = 86_400_000;
const ranges = {
  day: { label: 'the last 24 hours, by hour', ms: dayMs, bucket: 'hour', bucketMs: hourMs },
  week: { label: 'the last 7 days, by day', ms: 7 * dayMs, bucket: 'day', bucketMs: dayMs },
  month: { label: 'the last 30 days, by day', ms: 30 * dayMs, bucket: 'day', bucketMs: dayMs },
} as const;

const emptyPercentiles = { count: 0, p50: null, p90: null, p99: null, max: null };

/**
 * Every bucket of the window, the server's where it has data (it answers only those) and empty ones
 * between them, so that the time axis is continuous. Buckets start on UTC hours and days, as the server's.
 */
function everyBucket(buckets: LifecycleBucket[], since: Date, until: Date, bucketMs: number): LifecycleBucket[] {
  const byStart = new Map(buckets.map((b) => [b.start.getTime(), b]));
  const all: LifecycleBucket[] = [];
  for (let t = Math.floor(since.getTime() / bucketMs) * bucketMs; t < until.getTime(); t += bucketMs) {
    all.push(
      byStart.get(t) ?? {
        start: new Date(t),
        builds: [],
        pausedSeconds: emptyPercentiles,
        idleBeforeAutoPauseSeconds: emptyPercentiles,
        snapshotBytes: emptyPercentiles,
        snapshotMessages: emptyPercentiles,
        pauseFailures: {},
      },
    );
    byStart.delete(t);
  }
  return [...all, ...byStart.values()].sort((a, b) => a.start.getTime() - b.start.getTime());
}
type RangeName = keyof typeof ranges;

function bucketLabel(start: Date, bucket: 'hour' | 'day'): string {
  return bucket === 'hour'
    ? start.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    : start.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

function pauses(buckets: LifecycleBucket[], reason: string): number[] {
  return buckets.map((b) => b.builds.filter((x) => x.reason === reason).reduce((sum, x) => sum + x.count, 0));
}

/** Admins: pauses by reason over time, how long tasks stay paused, how large their snapshots are. */
export function TelemetryPage(): ReactElement {
  const trpc = useTRPC();
  const [rangeName, setRangeName] = useState<RangeName>('day');
  const range = ranges[rangeName];
  // The window is fixed when the range is chosen, so the query key does not change on every render.
  const window = useMemo(() => {
    const until = new Date();
    return { since: new Date(until.getTime() - range.ms), until, bucket: range.bucket };
  }, [range]);
  const telemetry = useQuery(trpc.telemetry.lifecycle.queryOptions(window));
  const selectId = useId();
  const buckets = telemetry.data ? everyBucket(telemetry.data, window.since, window.until, range.bucketMs) : [];
  const labels = buckets.map((b) => bucketLabel(b.start, range.bucket));
  const keys = buckets.map((b) => b.start.toISOString());

  return (
    <section aria-labelledby="telemetry-title">
      <div className="title-row">
        <h1 id="telemetry-title">Telemetry</h1>
        <div className="filter">
          <label htmlFor={selectId}>Period</label>
          <select id={selectId} value={rangeName} onChange={(e) => setRangeName(e.target.value as RangeName)}>
            {Object.entries(ranges).map(([name, r]) => (
              <option key={name} value={name}>
                {r.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      {telemetry.error && (
        <p role="alert" className="error">
          {refusalSentence('read', telemetry.error)}
        </p>
      )}
      {telemetry.isPending && <p aria-live="polite">Loading…</p>}
      {telemetry.data && (
        <div className="charts">
          <StackedBars
            title="Pauses by reason"
            keys={keys}
            labels={labels}
            format={(v) => (Number.isInteger(v) ? String(v) : v.toFixed(1))}
            series={[
              { name: 'paused by hand', className: 's1', values: pauses(buckets, 'task_manual_pause') },
              { name: 'paused when idle', className: 's2', values: pauses(buckets, 'task_auto_pause') },
            ]}
          />
          <Lines
            title="Time paused before a resume (percentiles)"
            keys={keys}
            labels={labels}
            format={formatSeconds}
            series={[
              { name: 'p50', className: 's1', values: buckets.map((b) => b.pausedSeconds.p50) },
              { name: 'p90', className: 's2', values: buckets.map((b) => b.pausedSeconds.p90) },
              { name: 'p99', className: 's3', values: buckets.map((b) => b.pausedSeconds.p99) },
            ]}
          />
          <Lines
            title="Snapshot sizes"
            keys={keys}
            labels={labels}
            format={formatBytes}
            series={[
              { name: 'p50', className: 's1', values: buckets.map((b) => b.snapshotBytes.p50) },
              { name: 'p90', className: 's2', values: buckets.map((b) => b.snapshotBytes.p90) },
              { name: 'max', className: 's3', values: buckets.map((b) => b.snapshotBytes.max) },
            ]}
          />
        </div>
      )}
    </section>
  );
}
