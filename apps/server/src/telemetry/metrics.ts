import { sql } from 'kysely';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Lifecycle } from '../lifecycle/context.ts';
import { statusSql, taskStatuses } from '../lifecycle/status.ts';

/**
 * The Prometheus metrics of one server process: lifecycle counters and histograms fed by the
 * lifecycle's events, task counts by status read from the database at scrape time, and the usual
 * process metrics. Returns the registry and a function that stops listening.
 */
export function createMetrics(lc: Lifecycle): { registry: Registry; stop(): void } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'hiatus_' });

  const builds = new Counter({
    name: 'hiatus_builds_total',
    help: 'Workspace builds by transition, reason and outcome (queued when inserted, then succeeded or failed)',
    labelNames: ['transition', 'reason', 'outcome'] as const,
    registers: [registry],
  });
  const pauseSeconds = new Histogram({
    name: 'hiatus_pause_duration_seconds',
    help: 'Time a pause took, by reason and outcome',
    labelNames: ['reason', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const pauseFetchSeconds = new Histogram({
    name: 'hiatus_pause_agent_fetch_seconds',
    help: "Time a pause spent fetching the agent's history",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const pauseDbSeconds = new Histogram({
    name: 'hiatus_pause_db_seconds',
    help: 'Time a pause spent in its database transaction (lock, snapshot upsert, build)',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const pauseFailures = new Counter({
    name: 'hiatus_pause_failures_total',
    help: 'Pauses that failed, by reason and cause',
    labelNames: ['reason', 'cause'] as const,
    registers: [registry],
  });
  const resumeSeconds = new Histogram({
    name: 'hiatus_resume_duration_seconds',
    help: 'Time a resume took, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const snapshotBytes = new Histogram({
    name: 'hiatus_snapshot_bytes',
    help: 'Size of the snapshots taken by pauses',
    buckets: [1024, 16 * 1024, 128 * 1024, 1024 ** 2, 4 * 1024 ** 2, 16 * 1024 ** 2, 32 * 1024 ** 2],
    registers: [registry],
  });
  new Gauge({
    name: 'hiatus_tasks',
    help: 'Tasks by status (deleted tasks are not counted)',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const status = statusSql(sql.ref('t.deleted_at'), sql.ref('b.transition'), sql.ref('b.job_status'));
      const { rows } = await sql<{ status: string; count: string }>`
        SELECT ${status} AS status, count(*) AS count
        FROM tasks t
        LEFT JOIN LATERAL (
          SELECT transition, job_status FROM workspace_builds
          WHERE workspace_id = t.workspace_id ORDER BY build_number DESC LIMIT 1
        ) b ON true
        WHERE t.deleted_at IS NULL
        GROUP BY 1`.execute(lc.db);
      this.reset();
      for (const s of taskStatuses) if (s !== 'deleted') this.set({ status: s }, 0);
      for (const row of rows) this.set({ status: row.status }, Number(row.count));
    },
  });

  const onBuild = ({ build }: { build: { transition: string; reason: string; jobStatus: string } }) => {
    const outcome = build.jobStatus === 'pending' ? 'queued' : build.jobStatus;
    if (outcome !== 'running') builds.inc({ transition: build.transition, reason: build.reason, outcome });
  };
  const onPause: Parameters<typeof lc.events.on<'pause'>>[1] = (event) => {
    pauseSeconds.observe({ reason: event.reason, outcome: event.outcome }, event.durationMs / 1000);
    pauseFetchSeconds.observe(event.fetchMs / 1000);
    if (event.outcome === 'succeeded') pauseDbSeconds.observe(event.dbMs / 1000);
    if (event.snapshotBytes !== null) snapshotBytes.observe(event.snapshotBytes);
    if (event.outcome === 'failed') pauseFailures.inc({ reason: event.reason, cause: event.cause ?? 'other' });
  };
  const onResume: Parameters<typeof lc.events.on<'resume'>>[1] = (event) => {
    resumeSeconds.observe({ outcome: event.outcome }, event.durationMs / 1000);
  };
  lc.events.on('build', onBuild);
  lc.events.on('pause', onPause);
  lc.events.on('resume', onResume);
  return {
    registry,
    stop() {
      lc.events.off('build', onBuild);
      lc.events.off('pause', onPause);
      lc.events.off('resume', onResume);
    },
  };
}
