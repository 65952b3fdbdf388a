import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { demoImage, dockerReachable, ensureDemoImage } from '@hiatus/provisioner';
import type { App } from './app.ts';
import { prepareAuditPartitions, removeOldAuditRecords } from './audit/audit.ts';
import { adminKeyBox } from './auth/admin-key.ts';
import { type BootstrapResult, bootstrapAdmin } from './auth/bootstrap.ts';
import { writeKeyUses } from './auth/principals.ts';
import { type Config, repoRoot } from './config.ts';
import { createApp } from './create-app.ts';
import { type DatabaseHandle, openDatabase, sessionDatabase } from './db/connection.ts';
import { ensureDatabaseExists } from './db/create-database.ts';
import { migrateToLatest, pendingMigrations } from './db/migrate.ts';
import { listenForChanges } from './db/notifications.ts';
import { defaults } from './defaults.ts';
import { createHttpServer } from './http.ts';
import { startInboxDelivery } from './inbox/inbox.ts';
import { autoPausePass } from './lifecycle/auto-pause.ts';
import { removeOldEvents } from './lifecycle/events.ts';
import { endStaleBuildJobs } from './lifecycle/jobs.ts';
import { startBuiltinProvisioner } from './lifecycle/provisioner.ts';
import { unservedJobs } from './lifecycle/provisioners.ts';
import { purgeDeletedTasks } from './lifecycle/purge.ts';
import { retentionPass } from './lifecycle/retention.ts';
import type { Logger } from './logger.ts';
import { type Loop, periodic, startLoops, startPeriodic } from './loops.ts';
import { isLoopbackOnly } from './net/url-policy.ts';
import { schedulePass } from './schedules/schedules.ts';
import { createMetrics } from './telemetry/metrics.ts';
import { ensureTemplate, type TemplateDefinition } from './templates/templates.ts';
import { startWebhookDelivery } from './webhooks/delivery.ts';

export type RunningServer = {
  url: string;
  database: DatabaseHandle;
  app: App;
  /** Stops taking requests, lets in-flight ones finish (up to the shutdown timeout), closes the database. */
  stop(): Promise<void>;
};

/** Opens the database, applies migrations if asked, and starts listening. */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const session = sessionDatabase(config.database);
  if (session.kind === 'postgres') {
    const created = await ensureDatabaseExists(session.url);
    if (created) log.info({ database: created }, `created the database "${created}": it did not exist`);
  }
  const database = openDatabase(config.database);
  const { backend, location } = database.description;
  log.info({ backend, location }, `opening the database: ${backend} at ${location}`);
  if (database.seeded) log.info('a new database: started as a copy of the seed, without initdb');
  let schemaCurrent = false;
  try {
    let pending = await pendingMigrations(database.db);
    if (config.migrateOnStart) {
      let applied = 0;
      // A current schema (the usual start) needs neither the migration lock nor Kysely's Migrator.
      if (pending.length) {
        // Through PgBouncer, migrations take a direct connection of their own.
        const migrating = session === config.database ? null : openDatabase(session);
        applied = (
          await migrateToLatest((migrating ?? database).db, ({ name, done, total }) =>
            log.info({ migration: name, done, total }, `migrating ${done} of ${total}: ${name}`),
          ).finally(() => migrating?.close())
        ).length;
        pending = await pendingMigrations(database.db);
      }
      log.info({ applied }, applied ? 'migrations applied' : 'schema is current');
    }
    schemaCurrent = pending.length === 0;
    if (schemaCurrent) await announceAdmin(await bootstrapAdmin(database.db, config.adminToken), log);
    else log.warn({ pending }, 'migrations are pending: not ready, and no admin bootstrap until they are applied');
  } catch (error) {
    await database.close();
    throw error;
  }

  // Reads that may lag go to the replica when there is one (see db/read-routing.ts).
  const replica = config.readReplica
    ? openDatabase({ kind: 'postgres', url: config.readReplica.url, poolSize: config.readReplica.poolSize })
    : null;
  if (replica)
    log.info(
      { location: replica.description.location },
      `reads that may lag go to the replica at ${replica.description.location}`,
    );
  const app = createApp(
    database.db,
    config.settings,
    replica && config.readReplica ? { db: replica.db, waitMs: config.readReplica.waitMs, log } : null,
  );
  if (schemaCurrent && config.demoTemplate && (await ensureTemplate(app, 'demo', demoTemplate()))) {
    log.info('created the template "demo": a demo agent that needs nothing installed');
  }
  if (schemaCurrent && config.demoTemplate) await ensureDockerDemo(app, log);
  // Listed (and so set up: verified keys wait for notifications) before any request can come in.
  const loops = backgroundLoops(app, config);
  const metrics = createMetrics(app);

  const server = createHttpServer({
    db: database.db,
    app,
    log,
    maxBodyBytes: config.maxBodyBytes,
    metrics: metrics.registry,
    metricsToken: config.metricsToken,
    metricsOpen: isLoopbackOnly(config.host),
    limits: config.limits,
  });
  if (!config.metricsToken && !isLoopbackOnly(config.host)) {
    log.warn(
      { host: config.host },
      'GET /metrics answers no one: the server listens beyond loopback; set HIATUS_METRICS_TOKEN',
    );
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url }, 'listening');
  // Started once listening: on PGlite their first passes' queries run on this thread, and held the
  // listening back (0.1 s here, more under load); a first request now queues behind them instead.
  const stopLoops = startLoops(loops, log);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await closeGracefully(server, config.shutdownTimeoutMs, log);
      await stopLoops();
      metrics.stop();
      await replica?.close();
      await database.close();
      log.info('stopped');
    })();
    return stopping;
  };
  return { url, database, app, stop };
}

/** The demo agent shipped with the provisioner, run by this very Node.js: a first task needs nothing else. */
function demoTemplate(): TemplateDefinition {
  return {
    driver: 'process',
    settings: { command: [process.execPath, path.join(repoRoot, 'packages/provisioner/demo-agent/agent.mjs')] },
    description: 'A demo agent speaking AgentAPI: it answers each message with a short reply. No model needed.',
    prePauseNotice: { message: 'Save your work: this task will pause.', waitSeconds: 5 },
  };
}

/**
 * The demo agent in a container, when a Docker Engine answers here: its image is built from this
 * machine's node binary first if missing (nothing is pulled). Without Docker, one log line.
 */
async function ensureDockerDemo(app: App, log: Logger): Promise<void> {
  const engine = await dockerReachable(2_000);
  if (!engine.reachable) {
    log.info(`no template "demo-docker": ${engine.why}`);
    return;
  }
  try {
    const { image, built } = await ensureDemoImage(path.join(repoRoot, 'packages/provisioner/demo-agent/agent.mjs'));
    if (built) log.info({ image }, `built the image ${image} for the template "demo-docker"`);
    if (await ensureTemplate(app, 'demo-docker', dockerDemoTemplate())) {
      log.info('created the template "demo-docker": the demo agent in a Docker container');
    }
  } catch (error) {
    log.warn({ err: error }, `could not set up the template "demo-docker": ${(error as Error).message}`);
  }
}

/** The demo agent in a container of its own: no network out, no neighbours, its workspace a volume. */
function dockerDemoTemplate(): TemplateDefinition {
  return {
    driver: 'docker',
    settings: {
      image: `${demoImage.repository}:${demoImage.stableTag}`,
      command: [demoImage.node, demoImage.agent],
      env: { DEMO_HOST: '0.0.0.0' },
      user: demoImage.user,
      workspacePath: demoImage.workspace,
      port: demoImage.port,
      cpus: 1,
      memoryMb: 256,
      pids: 128,
      readOnlyRoot: true,
    },
    description: 'The demo agent in a Docker container: no network out, no other agents in reach. No model needed.',
    prePauseNotice: { message: 'Save your work: this task will pause.', waitSeconds: 5 },
  };
}

/** The server's background loops, as one list: each enabled by its setting, all stopped together. */
function backgroundLoops(app: App, config: Config): Loop[] {
  const loops: Loop[] = [
    // Whoever runs the jobs, a job whose provisioner went silent must go to another, or its task waits forever.
    periodic('stale build jobs', config.provisioner.pollIntervalMs, async (log) => {
      const { requeued, failed } = await endStaleBuildJobs(app, config.provisioner.staleAfterMs);
      if (requeued.length)
        log.warn({ builds: requeued.map((b) => b.id) }, 'handed out again build jobs whose provisioner went silent');
      if (failed.length)
        log.warn({ builds: failed.map((b) => b.id) }, 'failed build jobs whose provisioners all went silent');
    }),
  ];
  // A job of a tagged template that no connected provisioner can take is said, once per process.
  const reported = new Set<string>();
  loops.push(
    periodic('unserved build jobs', defaults.unservedJobsIntervalMs, async (log) => {
      for (const job of await unservedJobs(app, reported)) {
        log.warn({ buildId: job.buildId, taskId: job.taskId, template: job.template, tags: job.tags }, job.message);
      }
    }),
  );
  // Every process delivers queued messages; the inbox lock and leases let one deliver each.
  loops.push({
    name: 'inbox delivery',
    start: (log) =>
      startInboxDelivery(app, { pollMs: defaults.inboxPollMs, concurrency: defaults.inboxConcurrency, log }),
  });
  if (config.provisioner.builtin) {
    loops.push({
      name: 'built-in provisioner',
      start: (log) => startBuiltinProvisioner(app, { ...config.provisioner, log }),
    });
  }
  if (config.autoPauseIntervalMs > 0) {
    loops.push(
      // Each agent is due once an interval; processes look for due ones four times an interval, so
      // an agent is asked between 1 and 1.25 intervals after its last look, whichever process asks.
      periodic('auto-pause', Math.max(1, Math.round(config.autoPauseIntervalMs / 4)), async (log) => {
        const { checked, paused, failed } = await autoPausePass(app, { intervalMs: config.autoPauseIntervalMs });
        if (paused.length) log.info({ checked, paused }, 'auto-paused idle tasks');
        if (failed.length) log.warn({ checked, failed }, 'could not look at or auto-pause some tasks');
      }),
    );
  }
  if (config.schedules.intervalMs > 0) {
    loops.push(
      periodic('schedules', config.schedules.intervalMs, async (log) => {
        const { checked, paused, resumed, failed } = await schedulePass(app, {
          warningSeconds: config.schedules.warningSeconds,
        });
        if (paused.length || resumed.length)
          log.info({ checked, paused, resumed }, 'schedules paused and resumed tasks');
        if (failed.length) log.warn({ checked, failed }, 'could not apply the schedule of some tasks');
      }),
    );
  }
  // Templates may set a retention of their own, so this runs even when the default keeps tasks.
  loops.push(
    periodic(
      'retention of paused tasks',
      defaults.retentionIntervalMs,
      async (log) => {
        const { deleted, failed } = await retentionPass(app, config.pausedRetention);
        if (deleted.length) log.info({ deleted }, 'deleted tasks paused longer than their retention');
        if (failed.length) log.warn({ failed }, 'could not delete some tasks past their retention');
      },
      { immediately: true },
    ),
  );
  if (config.purgeDeletedAfterDays > 0) {
    const olderThanMs = config.purgeDeletedAfterDays * 86_400_000;
    loops.push(
      periodic(
        'purge of deleted tasks',
        defaults.housekeepingIntervalMs,
        async (log) => {
          const purged = await purgeDeletedTasks(app, olderThanMs);
          if (purged.length) log.info({ purged: purged.length }, 'purged deleted tasks');
        },
        { immediately: true },
      ),
    );
  }
  // The audit log is partitioned by month: next month's partition exists before the month starts.
  loops.push(
    periodic(
      'audit partitions',
      defaults.auditPartitionIntervalMs,
      async (log) => {
        const created = await prepareAuditPartitions(app);
        if (created.length) log.info({ created }, 'created audit log partitions');
      },
      { immediately: true },
    ),
  );
  if (config.auditRetentionDays > 0) {
    loops.push(
      periodic(
        'audit retention',
        defaults.housekeepingIntervalMs,
        async (log) => {
          const { droppedPartitions, deleted } = await removeOldAuditRecords(
            app,
            config.auditRetentionDays,
            defaults.auditRetentionBatchSize,
          );
          if (droppedPartitions.length || deleted)
            log.info({ droppedPartitions, deleted }, 'audit retention removed old records');
        },
        { immediately: true },
      ),
    );
  }
  const session = sessionDatabase(config.database);
  if (session.kind === 'postgres') {
    const { url } = session;
    // What other processes commit wakes this one's watchers and delivery worker at once, and
    // evicts the keys they revoke: verified keys are served only while notifications are followed.
    app.keys.verified.suspend();
    loops.push({
      name: 'change notifications',
      start: (log) => {
        const listener = listenForChanges(
          url,
          (notice) => app.events.emit('change', notice),
          (error) => {
            app.keys.verified.suspend();
            log.warn({ err: error }, 'lost the notification connection; connecting again');
          },
          () => app.keys.verified.restart(),
        );
        return () => listener.stop();
      },
    });
  }
  loops.push({
    name: 'key uses',
    start: (log) => {
      const write = () => writeKeyUses(app.db, app.keys.uses).then(() => undefined);
      const stop = startPeriodic('key uses', write, { intervalMs: defaults.keyUseFlushMs, log });
      // The uses noted since the last pass are written on the way out.
      return () =>
        stop()
          .then(write)
          .catch((error: unknown) => log.warn({ err: error }, 'could not record the last key uses'));
    },
  });
  if (config.webhooks.enabled) {
    loops.push({
      name: 'webhook delivery',
      start: (log) => startWebhookDelivery(app, { ...config.webhooks, log }),
    });
  }
  if (config.eventRetentionDays > 0) {
    loops.push(
      periodic(
        'event retention',
        defaults.housekeepingIntervalMs,
        async (log) => {
          const removed = await removeOldEvents(app, config.eventRetentionDays, defaults.auditRetentionBatchSize);
          if (removed) log.info({ removed }, 'event retention removed old events');
        },
        { immediately: true },
      ),
    );
  }
  return loops;
}

async function announceAdmin(result: BootstrapResult, log: Logger): Promise<void> {
  if (result.kind === 'token' && result.created)
    log.info({ userId: result.userId }, 'admin key from HIATUS_ADMIN_TOKEN registered');
  if (result.kind === 'token' && result.retired.length)
    log.info({ keyIds: result.retired }, 'HIATUS_ADMIN_TOKEN changed: the keys of its earlier values are revoked');
  if (result.kind === 'token' && result.revoked)
    log.warn('the key of HIATUS_ADMIN_TOKEN was revoked: it lets no one in; set a new value to get an admin key');
  if (result.kind === 'generated') {
    log.warn(
      { userId: result.userId },
      'no user existed: created the admin "admin"; its API key is printed once on stderr',
    );
    process.stderr.write(
      adminKeyBox(result.key, {
        title: 'Hiatus created the first admin, "admin". Its API key, shown this once:',
        notes: ['Set HIATUS_ADMIN_TOKEN to choose the admin key yourself.'],
      }),
    );
  }
}

async function closeGracefully(server: http.Server, timeoutMs: number, log: Logger): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => {
    log.warn({ timeoutMs }, 'in-flight requests did not finish in time; closing their connections');
    server.closeAllConnections();
  }, timeoutMs);
  timer.unref();
  await closed;
  clearTimeout(timer);
}
