/**
 * Every default and limit of the service, in one place: config.ts gives the environment's
 * defaults from here, createApp fills unset settings from here, and the loops read their periods
 * here. Change a number here and it changes everywhere.
 */
export const defaults = Object.freeze({
  port: 8080,
  host: '127.0.0.1',
  poolSize: 10,
  logLevel: 'info' as const,
  migrateOnStart: true,
  shutdownTimeoutMs: 10_000,
  maxBodyBytes: 40 * 1024 * 1024,
  /** Longest wait for an agent's answer. */
  agentTimeoutMs: 5_000,
  /** Largest conversation history kept in a snapshot (and read live), in bytes. */
  maxSnapshotBytes: 32 * 1024 * 1024,
  /** How often active agents are polled for idleness; 0 turns auto-pause off. */
  autoPauseIntervalMs: 30_000,
  /** How many agents one auto-pause pass asks at once. */
  autoPauseConcurrency: 8,
  /** Idle time after which auto-pause stops a task that sets no timeout of its own. */
  defaultIdleTimeoutSeconds: 30 * 60,
  /** How long `send` with `resumeIfPaused` waits for the task to become active. */
  resumeWaitMs: 60_000,
  builtinProvisioner: true,
  provisionerPollMs: 1_000,
  provisionerStaleMs: 60_000,
  /** Soft-deleted tasks older than this are purged; 0 keeps them. */
  purgeDeletedAfterDays: 30,
  /** Audit records older than this are removed; 0 keeps them. */
  auditRetentionDays: 365,
  auditRetentionBatchSize: 5_000,
  /** How often the housekeeping loops (purge, audit retention) run. */
  housekeepingIntervalMs: 3_600_000,
  /** How often a watcher looks for changes made by other processes. */
  watchPollMs: 1_000,
  /** Log pages: the default and the largest size. */
  logPageSize: 100,
  maxLogPageSize: 1_000,
  /** Task and build lists: the default and the largest page size. */
  listPageSize: 50,
  maxListPageSize: 200,
  /** Audit log pages: the default and the largest size. */
  auditPageSize: 100,
  maxAuditPageSize: 500,
});
