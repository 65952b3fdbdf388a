/**
 * Every default and limit of the service, in one place: config.ts gives the environment's
 * defaults from here, createApp fills unset settings from here, and the loops read their periods
 * here. Change a number here and it changes everywhere.
 */
export const defaults = Object.freeze({
  port: 8080,
  host: '127.0.0.1',
  poolSize: 10,
  /** How long a read for the replica waits for it to replay its caller's last write before going to the primary. */
  readReplicaWaitMs: 200,
  /** Between two looks at the replica's replay position while waiting. */
  readReplicaPollMs: 10,
  /** Callers whose last write position is remembered, and for how long. */
  readReplicaKeys: 10_000,
  readReplicaPositionTtlMs: 60_000,
  /** At most one log line about a failing replica this often. */
  readReplicaComplaintMs: 60_000,
  logLevel: 'info' as const,
  migrateOnStart: true,
  shutdownTimeoutMs: 10_000,
  maxBodyBytes: 40 * 1024 * 1024,
  /** Longest wait for an agent's answer. */
  agentTimeoutMs: 5_000,
  /** Largest conversation history kept in a snapshot (and read live), in bytes. */
  maxSnapshotBytes: 32 * 1024 * 1024,
  /**
   * Largest history a task keeps across its agent lifetimes (the latest snapshot and the kept
   * segments before it), in bytes of their messages' JSON: past it the oldest segments are dropped.
   */
  maxHistoryBytes: 256 * 1024 * 1024,
  /** Networks and host names a user's agent may be at beyond public addresses: none (HIATUS_ALLOWED_AGENT_NETWORKS). */
  allowedAgentNetworks: Object.freeze([]) as readonly string[],
  /**
   * Where the agents a template's driver reports (its start's `agentUrl`) may be, and nowhere else
   * (HIATUS_DRIVER_AGENT_NETWORKS): loopback and private networks. Cloud metadata addresses inside
   * them (fd00:ec2::254) stay refused unless named alone.
   */
  driverAgentNetworks: Object.freeze([
    '127.0.0.0/8',
    '::1/128',
    '10.0.0.0/8',
    '172.16.0.0/12',
    '192.168.0.0/16',
    'fc00::/7',
  ]) as readonly string[],
  /**
   * What an agent's message (or a pushed one) may carry; past any of these the whole answer is
   * refused as not AgentAPI's. Depth counts the message itself as level 1: far below where
   * JSON.stringify (about 4,000 levels), superjson (about 1,400) or PostgreSQL's jsonb (about
   * 14,000) run out of stack.
   */
  maxAgentMessageDepth: 32,
  /**
   * How deep a call's input may nest as sent (superjson's envelope counts as one level): well above
   * the deepest input a procedure takes (a pushed message, 32 levels, under its push's three).
   */
  maxInputDepth: 64,
  /** Fields beyond AgentAPI's own (id, role, content, time) kept in a snapshot: how many, and their JSON's bytes. */
  maxAgentMessageExtraFields: 32,
  maxAgentMessageExtraBytes: 16 * 1024,
  /** The largest message id: ids are stored as PostgreSQL INTEGER (task_snapshot_stats.first_message_id). */
  maxAgentMessageId: 2 ** 31 - 1,
  /** How often active agents are polled for idleness; 0 turns auto-pause off. */
  autoPauseIntervalMs: 30_000,
  /** How many agents one auto-pause pass asks at once. */
  autoPauseConcurrency: 8,
  /** Due tasks an auto-pause pass claims at a time. */
  autoPauseBatchSize: 200,
  /** Idle time after which auto-pause stops a task that sets no timeout of its own. */
  defaultIdleTimeoutSeconds: 30 * 60,
  /** `tasks.keepAlive` without `forSeconds` holds off auto-pause this long; no keep-alive may be longer than the maximum. */
  keepAliveSeconds: 3_600,
  maxKeepAliveSeconds: 24 * 3_600,
  /** Inbox delivery: how often a process looks when nothing wakes it, tasks per pass, and tasks delivered at once. */
  inboxPollMs: 1_000,
  inboxTasksPerPass: 100,
  inboxConcurrency: 8,
  /** Passes of the inbox loop start at least this far apart, however many changes wake it. */
  inboxMinGapMs: 50,
  /** Messages one task's inbox holds at most: one more is refused until some are delivered or cancelled. */
  maxQueuedMessagesPerTask: 1_000,
  /** A template's resume recap (the original prompt and the last exchanges): its size when the template does not say, and the most it may say. */
  resumeMessageMaxBytes: 8 * 1024,
  maxResumeMessageBytes: 1_000_000,
  /** A message being delivered is held past the agent's two answers (status, POST) by this margin. */
  inboxLeaseMarginMs: 30_000,
  /** How long `tasks.pause` and `tasks.resume` with `wait` wait for their build by default, and at most. */
  transitionWaitMs: 30_000,
  maxTransitionWaitMs: 120_000,
  builtinProvisioner: true,
  provisionerPollMs: 1_000,
  provisionerStaleMs: 60_000,
  /**
   * A provisioner that asked for jobs this recently is connected (a long poll asks at least every
   * 30 s); a pending job of a tagged template none of them can take is logged, looked for this often.
   */
  provisionerSeenWithinMs: 60_000,
  unservedJobsIntervalMs: 10_000,
  /** A provisioner not seen for this long is forgotten (its row in provisioner_daemons). */
  provisionerForgetAfterMs: 86_400_000,
  /** Soft-deleted tasks older than this are purged; 0 keeps them. */
  purgeDeletedAfterDays: 30,
  /** Audit records older than this are removed; 0 keeps them. */
  auditRetentionDays: 365,
  auditRetentionBatchSize: 5_000,
  /** How often this month's and next month's audit partitions are made sure of (at start, then daily). */
  auditPartitionIntervalMs: 86_400_000,
  /** Partition maintenance waits this long at most for a lock (writes queue behind the wait), and tries this many times. */
  partitionLockTimeoutMs: 500,
  partitionLockAttempts: 5,
  /** How often the housekeeping loops (purge, audit retention) run. */
  housekeepingIntervalMs: 3_600_000,
  /** How often an open watch checks that its key is still valid: a revoked or expired key's stream ends within this. */
  watchKeyCheckMs: 2_000,
  /** A key's last use is recorded at most this often: requests in between write nothing. */
  keyLastUsedResolutionMs: 60_000,
  /** Key uses noted in a process are written this often, in one statement. */
  keyUseFlushMs: 1_000,
  /** A verified key serves later requests of this process without a query for this long (revocations evict it at once). */
  keyCacheMs: 10_000,
  /** Verified keys kept per process, at most. */
  keyCacheMax: 10_000,
  /** The same refused attempt (actor, action, resource) is audited at most once within this. */
  refusalAuditWindowMs: 60_000,
  /** Networks and hosts a webhook endpoint may be at beyond public addresses (HIATUS_ALLOWED_WEBHOOK_NETWORKS). */
  allowedWebhookNetworks: Object.freeze([]) as readonly string[],
  /** Webhooks: deliveries sent at once per process, the wait for an endpoint, the retry schedule. */
  webhookConcurrency: 8,
  webhookTimeoutMs: 10_000,
  webhookRetryBaseMs: 5_000,
  webhookRetryMaxMs: 15 * 60_000,
  /** A delivery failing for this long is given up and its endpoint marked failing. */
  webhookRetryForMs: 24 * 3_600_000,
  /** How often delivery workers look for due retries and other processes' events. */
  webhookPollMs: 1_000,
  /** Events are kept this long (those still waiting for a delivery, longer); 0 keeps them. */
  eventRetentionDays: 30,
  /** How long before an idle task's auto-pause its owner is warned (task.auto_pause_warning); 0: no warning. */
  autoPauseWarningSeconds: 300,
  /** How often schedules are applied (pauses at a window's end, resumes at its start); 0 turns schedules off. */
  scheduleIntervalMs: 60_000,
  /** How long before a schedule pauses an active task its owner is warned (task.schedule_pause_warning); 0: no warning. */
  schedulePauseWarningSeconds: 300,
  /** Tasks a schedule or retention pass reads at a time, and changes (pauses, resumes, deletes) at once. */
  schedulePageSize: 200,
  policyConcurrency: 8,
  /** Claims of policy occasions (a schedule's boundary, a warning) are kept this long after they were due. */
  policyOccasionKeepMs: 14 * 86_400_000,
  /** Tasks paused longer than this are deleted, unless their template says otherwise; 0 keeps them. */
  pausedRetentionDays: 0,
  /** How long before the retention of paused tasks deletes one its owner is warned (task.retention_warning); 0: no warning. */
  retentionWarningSeconds: 86_400,
  /** How often the retention of paused tasks looks for tasks to warn about and delete. */
  retentionIntervalMs: 600_000,
  /** Event pages: the default and the largest size. */
  eventPageSize: 100,
  maxEventPageSize: 1_000,
  /** A watcher with no notification looks again this often (a lost LISTEN connection, say). */
  watchFallbackPollMs: 5_000,
  /**
   * One caller's share, counted per server process: calls a key may make each second (0 turns the
   * limit off) and at once after a quiet spell; each call of a batch counts. The burst holds a
   * full batch.
   */
  rateLimitPerSecond: 100,
  rateLimitBurst: 400,
  /** Calls one HTTP request may batch; larger batches are refused whole before any work. */
  maxBatchSize: 100,
  /** Watch streams (subscriptions) one key may hold open at once, per server process. */
  maxOpenWatchesPerKey: 50,
  /**
   * Calls of one key running at once, per process; its others wait their turn. Below the pool
   * size, so one key's batch never holds every database connection.
   */
  maxConcurrentCallsPerKey: 4,
  /**
   * Whole-history reads (`snapshots.get`, a live log's fetch from the agent) running at once per
   * process, and waiting in line: each may hold a few times `maxSnapshotBytes` in memory.
   */
  heavyReadConcurrency: 2,
  heavyReadQueue: 32,
  /** What a caller refused for the bound above is told to wait. */
  heavyReadRetryAfterMs: 1_000,
  /**
   * One user's share of the server's time in whole-snapshot reads, per process: ms of every
   * second (0: no share), with bursts of this many ms. A 30 MB snapshot holds the event loop for
   * a few hundred ms as it is parsed and serialized; back to back, such reads would stall everyone.
   */
  heavyReadShareMsPerSecond: 20,
  heavyReadShareBurstMs: 2_000,
  /** A live log's pages are served from one fetch of the agent's history for this long; 0 fetches per page. */
  liveHistoryTtlMs: 2_000,
  /** Bytes of live histories kept for that, at most (least recently read dropped first). */
  liveHistoryMaxBytes: 64 * 1024 * 1024,
  /** Log pages: the default and the largest size. */
  logPageSize: 100,
  /** A log page ends before the entry that would take its contents past this many bytes (it holds one at least). */
  maxLogPageBytes: 4 * 1024 * 1024,
  /**
   * A log page's pending messages: the first this many of the inbox, each cut to this many characters
   * (at most 4 bytes each): some 400 KB at most, however full the inbox (1,000 messages of 1 MB).
   */
  pendingShown: 100,
  pendingPreviewChars: 1_000,
  maxLogPageSize: 1_000,
  /** Task and build lists: the default and the largest page size. */
  listPageSize: 50,
  maxListPageSize: 200,
  /** Audit log pages: the default and the largest size. */
  auditPageSize: 100,
  maxAuditPageSize: 500,
});
