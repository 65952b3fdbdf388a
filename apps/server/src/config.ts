import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { AppSettings } from './app.ts';
import type { DatabaseConfig } from './db/connection.ts';
import { defaults } from './defaults.ts';
import type { LogLevel } from './logger.ts';

/** The repository root: the embedded database lives under it by default. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const envSchema = z.object({
  PORT: port.default(defaults.port),
  HOST: z.string().min(1).default(defaults.host),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: positiveInt.max(1000).default(defaults.poolSize),
  HIATUS_DATA_DIR: z
    .string()
    .min(1)
    .default(path.join(repoRoot, '.hiatus', 'data')),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(defaults.logLevel),
  HIATUS_MIGRATE_ON_START: flag.default(defaults.migrateOnStart),
  HIATUS_SHUTDOWN_TIMEOUT_MS: positiveInt.default(defaults.shutdownTimeoutMs),
  HIATUS_MAX_BODY_BYTES: positiveInt.default(defaults.maxBodyBytes),
  HIATUS_AGENT_TIMEOUT_MS: positiveInt.default(defaults.agentTimeoutMs),
  HIATUS_MAX_SNAPSHOT_BYTES: positiveInt.default(defaults.maxSnapshotBytes),
  HIATUS_AUTO_PAUSE_INTERVAL_MS: nonNegativeInt.default(defaults.autoPauseIntervalMs),
  HIATUS_DEFAULT_IDLE_TIMEOUT_SECONDS: positiveInt.default(defaults.defaultIdleTimeoutSeconds),
  HIATUS_RESUME_WAIT_MS: positiveInt.default(defaults.resumeWaitMs),
  HIATUS_BUILTIN_PROVISIONER: flag.default(defaults.builtinProvisioner),
  HIATUS_PROVISIONER_POLL_MS: positiveInt.default(defaults.provisionerPollMs),
  HIATUS_PROVISIONER_STALE_MS: positiveInt.default(defaults.provisionerStaleMs),
  HIATUS_PROVISIONER_DIR: z
    .string()
    .min(1)
    .default(path.join(repoRoot, '.hiatus', 'provisioner')),
  HIATUS_PURGE_DELETED_AFTER_DAYS: nonNegativeInt.default(defaults.purgeDeletedAfterDays),
  HIATUS_DEMO_TEMPLATE: flag.default(true),
  HIATUS_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').max(512).optional(),
  HIATUS_AUDIT_RETENTION_DAYS: nonNegativeInt.default(defaults.auditRetentionDays),
});

export type Config = {
  port: number;
  host: string;
  database: DatabaseConfig;
  logLevel: LogLevel;
  migrateOnStart: boolean;
  shutdownTimeoutMs: number;
  maxBodyBytes: number;
  settings: AppSettings;
  /** 0 turns the auto-pause loop off. */
  autoPauseIntervalMs: number;
  provisioner: { builtin: boolean; pollIntervalMs: number; staleAfterMs: number; dataDir: string };
  /** Audit records older than this are removed; 0 keeps them forever. */
  auditRetentionDays: number;
  /** Soft-deleted tasks older than this are removed for good (with their builds); 0 keeps them. */
  purgeDeletedAfterDays: number;
  /** Create the `demo` template on start when there is none. */
  demoTemplate: boolean;
  /** An admin holding this key exists after start. */
  adminToken: string | undefined;
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
  return {
    port: e.PORT,
    host: e.HOST,
    database: databaseConfigFrom(e.DATABASE_URL, e.DATABASE_POOL_SIZE, e.HIATUS_DATA_DIR),
    logLevel: e.LOG_LEVEL,
    migrateOnStart: e.HIATUS_MIGRATE_ON_START,
    shutdownTimeoutMs: e.HIATUS_SHUTDOWN_TIMEOUT_MS,
    maxBodyBytes: e.HIATUS_MAX_BODY_BYTES,
    settings: {
      agentTimeoutMs: e.HIATUS_AGENT_TIMEOUT_MS,
      maxSnapshotBytes: e.HIATUS_MAX_SNAPSHOT_BYTES,
      defaultIdleTimeoutSeconds: e.HIATUS_DEFAULT_IDLE_TIMEOUT_SECONDS,
      resumeWaitMs: e.HIATUS_RESUME_WAIT_MS,
    },
    autoPauseIntervalMs: e.HIATUS_AUTO_PAUSE_INTERVAL_MS,
    provisioner: {
      builtin: e.HIATUS_BUILTIN_PROVISIONER,
      pollIntervalMs: e.HIATUS_PROVISIONER_POLL_MS,
      staleAfterMs: e.HIATUS_PROVISIONER_STALE_MS,
      dataDir: path.resolve(e.HIATUS_PROVISIONER_DIR),
    },
    auditRetentionDays: e.HIATUS_AUDIT_RETENTION_DAYS,
    adminToken: e.HIATUS_ADMIN_TOKEN,
    demoTemplate: e.HIATUS_DEMO_TEMPLATE,
    purgeDeletedAfterDays: e.HIATUS_PURGE_DELETED_AFTER_DAYS,
  };
}

function databaseConfigFrom(url: string | undefined, poolSize: number, dataDir: string): DatabaseConfig {
  return url ? { kind: 'postgres', url, poolSize } : { kind: 'pglite', dataDir: path.resolve(dataDir) };
}

/** The database part of the configuration alone, for tools such as kysely-ctl. */
export function loadDatabaseConfig(env: NodeJS.ProcessEnv = process.env): DatabaseConfig {
  return loadConfig(env).database;
}
