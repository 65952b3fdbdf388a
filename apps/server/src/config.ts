import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { LifecycleSettings } from './lifecycle/context.ts';

/** The repository root: the embedded database lives under it by default. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const envSchema = z.object({
  PORT: port.default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: positiveInt.max(1000).default(10),
  HIATUS_DATA_DIR: z
    .string()
    .min(1)
    .default(path.join(repoRoot, '.hiatus', 'data')),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HIATUS_MIGRATE_ON_START: flag.default(true),
  HIATUS_SHUTDOWN_TIMEOUT_MS: positiveInt.default(10_000),
  HIATUS_MAX_BODY_BYTES: positiveInt.default(40 * 1024 * 1024),
  HIATUS_AGENT_TIMEOUT_MS: positiveInt.default(5_000),
  HIATUS_MAX_SNAPSHOT_BYTES: positiveInt.default(32 * 1024 * 1024),
  HIATUS_AUTO_PAUSE_INTERVAL_MS: z.coerce.number().int().nonnegative().default(30_000),
  HIATUS_DEFAULT_IDLE_TIMEOUT_SECONDS: positiveInt.default(30 * 60),
  HIATUS_RESUME_WAIT_MS: positiveInt.default(60_000),
  HIATUS_BUILTIN_PROVISIONER: flag.default(true),
  HIATUS_PROVISIONER_POLL_MS: positiveInt.default(1_000),
  HIATUS_PROVISIONER_STALE_MS: positiveInt.default(60_000),
  HIATUS_PURGE_DELETED_AFTER_DAYS: z.coerce.number().int().nonnegative().default(30),
  HIATUS_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').max(512).optional(),
  HIATUS_AUDIT_RETENTION_DAYS: z.coerce.number().int().nonnegative().default(365),
});

export type Config = {
  port: number;
  host: string;
  database: DatabaseConfig;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  migrateOnStart: boolean;
  shutdownTimeoutMs: number;
  maxBodyBytes: number;
  lifecycle: LifecycleSettings;
  /** 0 turns the auto-pause loop off. */
  autoPauseIntervalMs: number;
  provisioner: { builtin: boolean; pollIntervalMs: number; staleAfterMs: number };
  /** Audit records older than this are removed; 0 keeps them forever. */
  auditRetentionDays: number;
  /** Soft-deleted tasks older than this are removed for good (with their builds); 0 keeps them. */
  purgeDeletedAfterDays: number;
  /** An admin holding this key exists after start. */
  adminToken: string | undefined;
};

export type DatabaseConfig = { kind: 'postgres'; url: string; poolSize: number } | { kind: 'pglite'; dataDir: string };

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
    lifecycle: {
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
    },
    auditRetentionDays: e.HIATUS_AUDIT_RETENTION_DAYS,
    adminToken: e.HIATUS_ADMIN_TOKEN,
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
