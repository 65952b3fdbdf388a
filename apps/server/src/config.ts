import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { AppSettings } from './app.ts';
import { weakSecretReason } from './auth/secret-strength.ts';
import type { DatabaseConfig } from './db/connection.ts';
import { defaults } from './defaults.ts';
import { HiatusError } from './domain/errors.ts';
import { type ProvisionerTags, parseTagList } from './domain/templates.ts';
import type { LogLevel } from './logger.ts';
import { AllowanceError, parseAllowance, splitAllowList } from './net/url-policy.ts';
import type { DeliveryOptions } from './webhooks/delivery.ts';

/** The repository root: the embedded database lives under it by default. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();
/** A secret the operator chooses: refused at start when it is too weak to guard anything. */
const operatorSecret = z
  .string()
  .max(512)
  .superRefine((value, ctx) => {
    const problem = weakSecretReason(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Comma-separated CIDRs, addresses and host names; every entry must be one of these. */
const allowList = z.string().transform((text, ctx) => {
  const entries = splitAllowList(text);
  try {
    parseAllowance(entries);
  } catch (error) {
    if (!(error instanceof AllowanceError)) throw error;
    ctx.addIssue({ code: 'custom', message: error.message });
    return z.NEVER;
  }
  return entries;
});

/** `host=a,gpu=true`: provisioner tags (see domain/templates.ts). */
const tagList = z.string().transform((text, ctx) => {
  try {
    return parseTagList(text);
  } catch (error) {
    if (!(error instanceof HiatusError)) throw error;
    ctx.addIssue({ code: 'custom', message: error.message });
    return z.NEVER;
  }
});

const envSchema = z.object({
  PORT: port.default(defaults.port),
  HOST: z.string().min(1).default(defaults.host),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  // A direct connection to PostgreSQL when DATABASE_URL goes through a transaction-mode pooler
  // (PgBouncer): for what needs a session of its own (LISTEN, creating the database, migrations).
  DATABASE_DIRECT_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  // A streaming replica of DATABASE_URL for reads that may lag (lists, logs of paused tasks, audit, telemetry).
  DATABASE_READ_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: positiveInt.max(1000).default(defaults.poolSize),
  HIATUS_READ_REPLICA_WAIT_MS: nonNegativeInt.max(60_000).default(defaults.readReplicaWaitMs),
  HIATUS_DATA_DIR: z
    .string()
    .min(1)
    .default(path.join(repoRoot, '.hiatus', 'data')),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(defaults.logLevel),
  HIATUS_MIGRATE_ON_START: flag.default(defaults.migrateOnStart),
  HIATUS_SHUTDOWN_TIMEOUT_MS: positiveInt.default(defaults.shutdownTimeoutMs),
  HIATUS_MAX_BODY_BYTES: positiveInt.default(defaults.maxBodyBytes),
  HIATUS_MAX_BATCH_SIZE: positiveInt.default(defaults.maxBatchSize),
  HIATUS_RATE_LIMIT_PER_SECOND: z.coerce.number().nonnegative().default(defaults.rateLimitPerSecond),
  HIATUS_RATE_LIMIT_BURST: positiveInt.default(defaults.rateLimitBurst),
  HIATUS_MAX_OPEN_WATCHES_PER_KEY: positiveInt.default(defaults.maxOpenWatchesPerKey),
  HIATUS_MAX_CONCURRENT_CALLS_PER_KEY: positiveInt.default(defaults.maxConcurrentCallsPerKey),
  HIATUS_HEAVY_READ_CONCURRENCY: positiveInt.default(defaults.heavyReadConcurrency),
  HIATUS_HEAVY_READ_QUEUE: nonNegativeInt.default(defaults.heavyReadQueue),
  HIATUS_HEAVY_READ_MS_PER_SECOND: nonNegativeInt.max(1000).default(defaults.heavyReadShareMsPerSecond),
  HIATUS_HEAVY_READ_BURST_MS: positiveInt.default(defaults.heavyReadShareBurstMs),
  HIATUS_LIVE_LOG_CACHE_MS: nonNegativeInt.default(defaults.liveHistoryTtlMs),
  HIATUS_KEY_CACHE_MS: nonNegativeInt.max(300_000).default(defaults.keyCacheMs),
  HIATUS_LIVE_LOG_CACHE_BYTES: positiveInt.default(defaults.liveHistoryMaxBytes),
  HIATUS_AGENT_TIMEOUT_MS: positiveInt.default(defaults.agentTimeoutMs),
  HIATUS_ALLOWED_AGENT_NETWORKS: allowList.optional(),
  HIATUS_DRIVER_AGENT_NETWORKS: allowList.optional(),
  HIATUS_MAX_SNAPSHOT_BYTES: positiveInt.default(defaults.maxSnapshotBytes),
  HIATUS_MAX_HISTORY_BYTES: positiveInt.default(defaults.maxHistoryBytes),
  HIATUS_AUTO_PAUSE_INTERVAL_MS: nonNegativeInt.default(defaults.autoPauseIntervalMs),
  HIATUS_DEFAULT_IDLE_TIMEOUT_SECONDS: positiveInt.default(defaults.defaultIdleTimeoutSeconds),
  HIATUS_BUILTIN_PROVISIONER: flag.default(defaults.builtinProvisioner),
  HIATUS_BUILTIN_PROVISIONER_TAGS: tagList.optional(),
  HIATUS_PROVISIONER_POLL_MS: positiveInt.default(defaults.provisionerPollMs),
  HIATUS_PROVISIONER_STALE_MS: positiveInt.default(defaults.provisionerStaleMs),
  HIATUS_PROVISIONER_DIR: z
    .string()
    .min(1)
    .default(path.join(repoRoot, '.hiatus', 'provisioner')),
  HIATUS_PURGE_DELETED_AFTER_DAYS: nonNegativeInt.default(defaults.purgeDeletedAfterDays),
  HIATUS_SCHEDULE_INTERVAL_MS: nonNegativeInt.default(defaults.scheduleIntervalMs),
  HIATUS_SCHEDULE_PAUSE_WARNING_SECONDS: nonNegativeInt.default(defaults.schedulePauseWarningSeconds),
  HIATUS_PAUSED_RETENTION_DAYS: nonNegativeInt.max(36_500).default(defaults.pausedRetentionDays),
  HIATUS_RETENTION_WARNING_SECONDS: nonNegativeInt.default(defaults.retentionWarningSeconds),
  HIATUS_DEMO_TEMPLATE: flag.default(true),
  HIATUS_ADMIN_TOKEN: operatorSecret.optional(),
  HIATUS_METRICS_TOKEN: operatorSecret.optional(),
  HIATUS_AUDIT_RETENTION_DAYS: nonNegativeInt.default(defaults.auditRetentionDays),
  HIATUS_EVENT_RETENTION_DAYS: nonNegativeInt.default(defaults.eventRetentionDays),
  HIATUS_AUTO_PAUSE_WARNING_SECONDS: nonNegativeInt.default(defaults.autoPauseWarningSeconds),
  HIATUS_ALLOWED_WEBHOOK_NETWORKS: allowList.optional(),
  HIATUS_WEBHOOK_DELIVERY: flag.default(true),
  HIATUS_WEBHOOK_TIMEOUT_MS: positiveInt.default(defaults.webhookTimeoutMs),
  HIATUS_WEBHOOK_CONCURRENCY: positiveInt.max(256).default(defaults.webhookConcurrency),
  HIATUS_WEBHOOK_RETRY_BASE_MS: positiveInt.default(defaults.webhookRetryBaseMs),
  HIATUS_WEBHOOK_RETRY_MAX_MS: positiveInt.default(defaults.webhookRetryMaxMs),
  HIATUS_WEBHOOK_RETRY_FOR_MS: positiveInt.default(defaults.webhookRetryForMs),
});

export type Config = {
  port: number;
  host: string;
  database: DatabaseConfig;
  /** A streaming replica for lag-tolerant reads (DATABASE_READ_URL), and how long a read waits for it to catch up. */
  readReplica: { url: string; poolSize: number; waitMs: number } | null;
  logLevel: LogLevel;
  migrateOnStart: boolean;
  shutdownTimeoutMs: number;
  maxBodyBytes: number;
  /** One key's share of the API, counted in this process (each of R processes allows as much). */
  limits: {
    /** Calls one request may batch. */
    maxBatchSize: number;
    /** Calls a second per key; 0 turns the rate limit off. */
    ratePerSecond: number;
    rateBurst: number;
    maxOpenWatchesPerKey: number;
    /** Calls of one key running at once; the rest wait their turn. */
    maxConcurrentCallsPerKey: number;
  };
  settings: AppSettings;
  /** 0 turns the auto-pause loop off. */
  autoPauseIntervalMs: number;
  provisioner: {
    builtin: boolean;
    /** The built-in provisioner's tags: it takes the jobs of templates whose tags are all among them; none by default. */
    tags: ProvisionerTags;
    pollIntervalMs: number;
    staleAfterMs: number;
    dataDir: string;
  };
  /** Audit records older than this are removed; 0 keeps them forever. */
  auditRetentionDays: number;
  /** Events older than this are removed (unless a delivery still waits); 0 keeps them forever. */
  eventRetentionDays: number;
  /** How webhook deliveries are sent and retried; `enabled` false leaves them to other processes. */
  webhooks: DeliveryOptions & { enabled: boolean };
  /** Soft-deleted tasks older than this are removed for good (with their builds); 0 keeps them. */
  purgeDeletedAfterDays: number;
  /** Schedules: how often they are applied (0: never) and how long before a schedule's pause the owner is warned. */
  schedules: { intervalMs: number; warningSeconds: number };
  /** Retention of paused tasks: days (0: kept, unless a template says otherwise) and the warning before a delete. */
  pausedRetention: { defaultDays: number; warningSeconds: number };
  /** Create the `demo` template on start when there is none. */
  demoTemplate: boolean;
  /** An admin holding this key exists after start; the keys of its earlier values are revoked. */
  adminToken: string | undefined;
  /** When set, GET /metrics answers only `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Reads and validates the configuration once, at start.
 * A bad value throws a ConfigError naming the variable and what is wrong with it.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most shells' habits.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.HIATUS_RATE_LIMIT_PER_SECOND > 0 && e.HIATUS_RATE_LIMIT_BURST < e.HIATUS_MAX_BATCH_SIZE) {
    throw new ConfigError(
      `Invalid configuration:\n  HIATUS_RATE_LIMIT_BURST: must be at least HIATUS_MAX_BATCH_SIZE (${e.HIATUS_MAX_BATCH_SIZE}), or a full batch could never pass`,
    );
  }
  return {
    port: e.PORT,
    host: e.HOST,
    database: databaseConfigFrom(e.DATABASE_URL, e.DATABASE_DIRECT_URL, e.DATABASE_POOL_SIZE, e.HIATUS_DATA_DIR),
    readReplica: readReplicaFrom(
      e.DATABASE_READ_URL,
      e.DATABASE_URL,
      e.DATABASE_POOL_SIZE,
      e.HIATUS_READ_REPLICA_WAIT_MS,
    ),
    logLevel: e.LOG_LEVEL,
    migrateOnStart: e.HIATUS_MIGRATE_ON_START,
    shutdownTimeoutMs: e.HIATUS_SHUTDOWN_TIMEOUT_MS,
    maxBodyBytes: e.HIATUS_MAX_BODY_BYTES,
    limits: {
      maxBatchSize: e.HIATUS_MAX_BATCH_SIZE,
      ratePerSecond: e.HIATUS_RATE_LIMIT_PER_SECOND,
      rateBurst: e.HIATUS_RATE_LIMIT_BURST,
      maxOpenWatchesPerKey: e.HIATUS_MAX_OPEN_WATCHES_PER_KEY,
      maxConcurrentCallsPerKey: e.HIATUS_MAX_CONCURRENT_CALLS_PER_KEY,
    },
    settings: {
      agentTimeoutMs: e.HIATUS_AGENT_TIMEOUT_MS,
      maxSnapshotBytes: e.HIATUS_MAX_SNAPSHOT_BYTES,
      maxHistoryBytes: e.HIATUS_MAX_HISTORY_BYTES,
      defaultIdleTimeoutSeconds: e.HIATUS_DEFAULT_IDLE_TIMEOUT_SECONDS,
      allowedAgentNetworks: e.HIATUS_ALLOWED_AGENT_NETWORKS ?? defaults.allowedAgentNetworks,
      driverAgentNetworks: e.HIATUS_DRIVER_AGENT_NETWORKS ?? defaults.driverAgentNetworks,
      heavyReadConcurrency: e.HIATUS_HEAVY_READ_CONCURRENCY,
      heavyReadQueue: e.HIATUS_HEAVY_READ_QUEUE,
      heavyReadShareMsPerSecond: e.HIATUS_HEAVY_READ_MS_PER_SECOND,
      heavyReadShareBurstMs: e.HIATUS_HEAVY_READ_BURST_MS,
      liveHistoryTtlMs: e.HIATUS_LIVE_LOG_CACHE_MS,
      keyCacheMs: e.HIATUS_KEY_CACHE_MS,
      liveHistoryMaxBytes: e.HIATUS_LIVE_LOG_CACHE_BYTES,
      autoPauseWarningSeconds: e.HIATUS_AUTO_PAUSE_WARNING_SECONDS,
      allowedWebhookNetworks: e.HIATUS_ALLOWED_WEBHOOK_NETWORKS ?? defaults.allowedWebhookNetworks,
    },
    autoPauseIntervalMs: e.HIATUS_AUTO_PAUSE_INTERVAL_MS,
    provisioner: {
      builtin: e.HIATUS_BUILTIN_PROVISIONER,
      tags: e.HIATUS_BUILTIN_PROVISIONER_TAGS ?? {},
      pollIntervalMs: e.HIATUS_PROVISIONER_POLL_MS,
      staleAfterMs: e.HIATUS_PROVISIONER_STALE_MS,
      dataDir: path.resolve(e.HIATUS_PROVISIONER_DIR),
    },
    auditRetentionDays: e.HIATUS_AUDIT_RETENTION_DAYS,
    eventRetentionDays: e.HIATUS_EVENT_RETENTION_DAYS,
    webhooks: {
      enabled: e.HIATUS_WEBHOOK_DELIVERY,
      concurrency: e.HIATUS_WEBHOOK_CONCURRENCY,
      timeoutMs: e.HIATUS_WEBHOOK_TIMEOUT_MS,
      retryBaseMs: e.HIATUS_WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: Math.max(e.HIATUS_WEBHOOK_RETRY_MAX_MS, e.HIATUS_WEBHOOK_RETRY_BASE_MS),
      retryForMs: e.HIATUS_WEBHOOK_RETRY_FOR_MS,
      pollMs: defaults.webhookPollMs,
    },
    adminToken: e.HIATUS_ADMIN_TOKEN,
    metricsToken: e.HIATUS_METRICS_TOKEN,
    demoTemplate: e.HIATUS_DEMO_TEMPLATE,
    purgeDeletedAfterDays: e.HIATUS_PURGE_DELETED_AFTER_DAYS,
    schedules: { intervalMs: e.HIATUS_SCHEDULE_INTERVAL_MS, warningSeconds: e.HIATUS_SCHEDULE_PAUSE_WARNING_SECONDS },
    pausedRetention: {
      defaultDays: e.HIATUS_PAUSED_RETENTION_DAYS,
      warningSeconds: e.HIATUS_RETENTION_WARNING_SECONDS,
    },
  };
}

function databaseConfigFrom(
  url: string | undefined,
  directUrl: string | undefined,
  poolSize: number,
  dataDir: string,
): DatabaseConfig {
  if (!url) {
    if (directUrl) throw new ConfigError('DATABASE_DIRECT_URL is set without DATABASE_URL: set both, or neither');
    return { kind: 'pglite', dataDir: path.resolve(dataDir) };
  }
  return { kind: 'postgres', url, poolSize, ...(directUrl ? { directUrl } : {}) };
}

function readReplicaFrom(
  readUrl: string | undefined,
  url: string | undefined,
  poolSize: number,
  waitMs: number,
): Config['readReplica'] {
  if (!readUrl) return null;
  if (!url)
    throw new ConfigError('DATABASE_READ_URL is set without DATABASE_URL: a replica needs a PostgreSQL primary');
  return { url: readUrl, poolSize, waitMs };
}

/** The database part of the configuration alone, for tools such as kysely-ctl. */
export function loadDatabaseConfig(env: NodeJS.ProcessEnv = process.env): DatabaseConfig {
  return loadConfig(env).database;
}
