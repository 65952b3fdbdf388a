import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { App } from '../app.ts';
import { countTasksByStatus } from '../db/tasks.ts';
import { deliveryBacklog } from '../db/webhooks.ts';
import { pauseStageOf, taskStatuses } from '../domain/lifecycle.ts';

/**
 * The Prometheus metrics of one server process: lifecycle counters and histograms fed by the
 * services' events, task counts by status read from the database at scrape time, and the usual
 * process metrics. Returns the registry and a function that stops listening.
 */
export function createMetrics(app: Pick<App, 'db' | 'events'>): { registry: Registry; stop(): void } {
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
  // hiatus_tasks and hiatus_paused_tasks read one query: prom-client starts every gauge's collect of a
  // scrape at once, so the second finds the first's query in flight and shares it.
  let tasksNow: ReturnType<typeof countTasksByStatus> | undefined;
  const countTasks = () => {
    tasksNow ??= countTasksByStatus(app.db).finally(() => {
      tasksNow = undefined;
    });
    return tasksNow;
  };
  new Gauge({
    name: 'hiatus_tasks',
    help: 'Tasks by status (deleted tasks are not counted)',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const { counts } = await countTasks();
      this.reset();
      for (const s of taskStatuses) if (s !== 'deleted') this.set({ status: s }, 0);
      for (const row of counts) this.set({ status: row.status }, row.count);
    },
  });
  new Gauge({
    name: 'hiatus_paused_tasks',
    help: 'Paused tasks by stage: hot (the agent frozen, resumed at once) or cold (stopped)',
    labelNames: ['stage'] as const,
    registers: [registry],
    async collect() {
      const { counts, hotOutputs } = await countTasks();
      const paused = counts.find((row) => row.status === 'paused')?.count ?? 0;
      const now = new Date();
      const hot = hotOutputs.filter((outputs) => pauseStageOf('paused', outputs, now) === 'hot').length;
      this.set({ stage: 'hot' }, hot);
      this.set({ stage: 'cold' }, paused - hot);
    },
  });

  const deliveries = new Counter({
    name: 'hiatus_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome (delivered, retrying, failed: given up)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const deliveryLatency = new Histogram({
    name: 'hiatus_webhook_delivery_latency_seconds',
    help: "Time from an event's commit to its successful delivery",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600],
    registers: [registry],
  });
  new Gauge({
    name: 'hiatus_webhook_oldest_undelivered_seconds',
    help: 'Age of the oldest event still waiting for a delivery (0 when none)',
    registers: [registry],
    async collect() {
      this.set((await deliveryBacklog(app.db)).oldestPendingSeconds);
    },
  });
  const onDelivery: Parameters<typeof app.events.on<'delivery'>>[1] = (event) => {
    deliveries.inc({ outcome: event.outcome });
    if (event.outcome === 'delivered') deliveryLatency.observe(event.latencyMs / 1000);
  };

  const autoPauseSeconds = new Histogram({
    name: 'hiatus_auto_pause_pass_seconds',
    help: 'Time an auto-pause pass of this process took (claiming due agents, asking them, pausing the idle ones)',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const autoPauseChecks = new Counter({
    name: 'hiatus_auto_pause_checks_total',
    help: 'Agents this process asked for their status in auto-pause passes, by outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const onAutoPause: Parameters<typeof app.events.on<'autoPause'>>[1] = (event) => {
    autoPauseSeconds.observe(event.durationMs / 1000);
    autoPauseChecks.inc({ outcome: 'paused' }, event.paused);
    autoPauseChecks.inc({ outcome: 'failed' }, event.failed);
    autoPauseChecks.inc({ outcome: 'kept' }, event.checked - event.paused - event.failed);
  };

  const onBuild = ({ build }: { build: { transition: string; reason: string; jobStatus: string } }) => {
    const outcome = build.jobStatus === 'pending' ? 'queued' : build.jobStatus;
    if (outcome !== 'running') builds.inc({ transition: build.transition, reason: build.reason, outcome });
  };
  const onPause: Parameters<typeof app.events.on<'pause'>>[1] = (event) => {
    pauseSeconds.observe({ reason: event.reason, outcome: event.outcome }, event.durationMs / 1000);
    pauseFetchSeconds.observe(event.fetchMs / 1000);
    if (event.outcome === 'succeeded') pauseDbSeconds.observe(event.dbMs / 1000);
    if (event.snapshotBytes !== null) snapshotBytes.observe(event.snapshotBytes);
    if (event.outcome === 'failed') pauseFailures.inc({ reason: event.reason, cause: event.cause ?? 'other' });
  };
  const onResume: Parameters<typeof app.events.on<'resume'>>[1] = (event) => {
    resumeSeconds.observe({ outcome: event.outcome }, event.durationMs / 1000);
  };
  app.events.on('build', onBuild);
  app.events.on('pause', onPause);
  app.events.on('resume', onResume);
  app.events.on('delivery', onDelivery);
  app.events.on('autoPause', onAutoPause);
  return {
    registry,
    stop() {
      app.events.off('build', onBuild);
      app.events.off('pause', onPause);
      app.events.off('resume', onResume);
      app.events.off('delivery', onDelivery);
      app.events.off('autoPause', onAutoPause);
    },
  };
}
