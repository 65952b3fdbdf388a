import { EventEmitter } from 'node:events';
import { AgentClient } from './agentapi/client.ts';
import type { KeyBook } from './auth/principals.ts';
import { KeyUses, VerifiedKeys } from './auth/verified-keys.ts';
import type { Build } from './db/builds.ts';
import type { Db } from './db/connection.ts';
import type { ChangeNotice } from './db/events.ts';
import { defaults } from './defaults.ts';
import { HiatusError } from './domain/errors.ts';
import type { PauseReason } from './domain/lifecycle.ts';
import { LiveHistories } from './lifecycle/live-history.ts';
import { ReadRouting } from './lifecycle/reads.ts';
import { ConcurrencyGate } from './limits/concurrency.ts';
import type { Logger } from './logger.ts';
import { createAgentDispatcher } from './net/agent-dispatcher.ts';
import { postWebhook, type WebhookPost } from './net/post-webhook.ts';
import { AgentAddressPolicy, parseAllowance, webhookSubject } from './net/url-policy.ts';

/** The settings the services read, from the configuration (each defaults to `defaults`). */
export type AppSettings = {
  agentTimeoutMs: number;
  maxSnapshotBytes: number;
  defaultIdleTimeoutSeconds: number;
  resumeWaitMs: number;
  /**
   * Networks (CIDRs) and host names a user's agent may be at beyond public addresses
   * (HIATUS_ALLOWED_AGENT_NETWORKS); loopback, private, link-local and metadata ones are refused otherwise.
   */
  allowedAgentNetworks: readonly string[];
  /** Whole-history reads (`snapshots.get`, a live log's fetch) running at once in this process, and waiting. */
  heavyReadConcurrency: number;
  heavyReadQueue: number;
  /** One user's share of time in whole-snapshot reads: ms a second (0: unlimited), and the burst. */
  heavyReadShareMsPerSecond: number;
  heavyReadShareBurstMs: number;
  /** How long a fetched live history serves log pages (0: fetched for every page), and its bytes kept at most. */
  liveHistoryTtlMs: number;
  liveHistoryMaxBytes: number;
  /** How long before an idle task's auto-pause its owner is warned (`task.auto_pause_warning`); 0: never. */
  autoPauseWarningSeconds: number;
  /** Networks and host names a webhook endpoint may be at beyond public addresses (HIATUS_ALLOWED_WEBHOOK_NETWORKS). */
  allowedWebhookNetworks: readonly string[];
  /** How long a verified API key serves this process's requests without a query (HIATUS_KEY_CACHE_MS); 0: never. */
  keyCacheMs: number;
};

/** A build was inserted or its job changed state, in this process. */
export type BuildEvent = { taskId: string | null; workspaceId: string; build: Build };

/** A pause attempt ended; for metrics. */
export type PauseEvent = {
  reason: PauseReason;
  outcome: 'succeeded' | 'failed';
  cause?: string | null;
  durationMs: number;
  /** Time spent asking the agent for its history. */
  fetchMs: number;
  /** Time spent in the pause's transaction (lock, snapshot upsert, build). */
  dbMs: number;
  snapshotBytes: number | null;
};

/** A webhook delivery attempt ended; for metrics. `latencyMs`: from the event's commit to now. */
export type DeliveryEvent = { outcome: 'delivered' | 'retrying' | 'failed'; durationMs: number; latencyMs: number };

/** An auto-pause pass of this process ended: how many agents it asked, paused and failed on; for metrics. */
export type AutoPauseEvent = { checked: number; paused: number; failed: number; durationMs: number };

/** A resume attempt ended; for metrics. */
export type ResumeEvent = { outcome: 'succeeded' | 'failed'; durationMs: number };

/**
 * In-process notifications: the built-in provisioner and watchers follow builds, metrics follow
 * everything. A service never waits for a listener.
 */
export class AppEvents extends EventEmitter<{
  build: [BuildEvent];
  /** Something committed that watchers should look at, here or (through notifications) in another process. */
  change: [ChangeNotice];
  pause: [PauseEvent];
  resume: [ResumeEvent];
  delivery: [DeliveryEvent];
  autoPause: [AutoPauseEvent];
}> {}

/**
 * The app's services share this: the database, the settings, the event bus and a way to reach an
 * agent. No HTTP and no tRPC: the API and the background loops both work through it.
 */
export type App = {
  db: Db;
  /**
   * The database for reads that may lag (lists, logs of paused tasks, audit, telemetry): the read
   * replica when the current request may use it (see `readRouting`), else `db`.
   */
  reads(): Db;
  /** Chooses per request between the replica and the primary, and remembers callers' writes. */
  readRouting: ReadRouting;
  settings: AppSettings;
  events: AppEvents;
  /**
   * Why a user's agent URL is refused (its form, or an address its host resolves to that the
   * operator does not allow), or null: checked when a task is created, and again at every
   * connection. A function rather than the policy itself: the SDK's bundled types stay small.
   */
  agentUrlRefusal(url: string): Promise<string | null>;
  /** Whole-history reads wait here for a place, so the memory they hold stays bounded. */
  heavyReads: ConcurrencyGate;
  /** Agents' histories kept a few seconds for the live log's pages. */
  liveHistories: LiveHistories;
  /**
   * A client for the agent at `baseUrl`; null (no URL yet) gives one whose calls fail as
   * unreachable. A user's URL is held to the address policy at every connection; `trusted` is for a
   * URL a template's driver reported (Hiatus started that agent itself): see `agentTrust`.
   */
  agent(baseUrl: string | null, options?: { trusted?: boolean }): AgentClient;
  /**
   * A webhook endpoint's URL, checked like a user's agent URL (its form, and the addresses its
   * host resolves to, against HIATUS_ALLOWED_WEBHOOK_NETWORKS); throws `bad_input` when refused.
   */
  checkWebhookUrl(url: string): Promise<string>;
  /** POSTs a delivery to an endpoint, held to the same policy at the connection; answers its status. */
  postWebhook(url: string, post: WebhookPost): Promise<number>;
  /**
   * API keys this process verified recently, and their uses to record. A revocation announced as
   * a change (here or, through notifications, in another process) evicts the key at once.
   */
  keys: KeyBook;
};

/** A task's agent URL is trusted when Hiatus's own driver reported it: the task has a template. */
export function agentTrust(task: { templateId: string | null }): { trusted: boolean } {
  return { trusted: task.templateId !== null };
}

export function createApp(
  db: Db,
  settings: Partial<AppSettings> = {},
  replica: { db: Db; waitMs: number; log?: Logger } | null = null,
): App {
  const merged: AppSettings = {
    agentTimeoutMs: settings.agentTimeoutMs ?? defaults.agentTimeoutMs,
    maxSnapshotBytes: settings.maxSnapshotBytes ?? defaults.maxSnapshotBytes,
    defaultIdleTimeoutSeconds: settings.defaultIdleTimeoutSeconds ?? defaults.defaultIdleTimeoutSeconds,
    resumeWaitMs: settings.resumeWaitMs ?? defaults.resumeWaitMs,
    allowedAgentNetworks: settings.allowedAgentNetworks ?? defaults.allowedAgentNetworks,
    heavyReadConcurrency: settings.heavyReadConcurrency ?? defaults.heavyReadConcurrency,
    heavyReadQueue: settings.heavyReadQueue ?? defaults.heavyReadQueue,
    heavyReadShareMsPerSecond: settings.heavyReadShareMsPerSecond ?? defaults.heavyReadShareMsPerSecond,
    heavyReadShareBurstMs: settings.heavyReadShareBurstMs ?? defaults.heavyReadShareBurstMs,
    liveHistoryTtlMs: settings.liveHistoryTtlMs ?? defaults.liveHistoryTtlMs,
    liveHistoryMaxBytes: settings.liveHistoryMaxBytes ?? defaults.liveHistoryMaxBytes,
    autoPauseWarningSeconds: settings.autoPauseWarningSeconds ?? defaults.autoPauseWarningSeconds,
    allowedWebhookNetworks: settings.allowedWebhookNetworks ?? defaults.allowedWebhookNetworks,
    keyCacheMs: settings.keyCacheMs ?? defaults.keyCacheMs,
  };
  const agentAddresses = new AgentAddressPolicy(parseAllowance(merged.allowedAgentNetworks), {
    resolveTimeoutMs: merged.agentTimeoutMs,
  });
  const connectTimeoutMs = merged.agentTimeoutMs;
  const userAgents = createAgentDispatcher(agentAddresses, { connectTimeoutMs });
  const trustedAgents = createAgentDispatcher(null, { connectTimeoutMs });
  const webhookAddresses = new AgentAddressPolicy(parseAllowance(merged.allowedWebhookNetworks), {
    resolveTimeoutMs: merged.agentTimeoutMs,
    subject: webhookSubject,
  });
  const webhookEndpoints = createAgentDispatcher(webhookAddresses, { connectTimeoutMs });
  const events = new AppEvents();
  events.setMaxListeners(0);
  const keys: KeyBook = {
    verified: new VerifiedKeys({ ttlMs: merged.keyCacheMs, max: defaults.keyCacheMax, followingAtStart: true }),
    uses: new KeyUses(defaults.keyLastUsedResolutionMs),
  };
  events.on('change', (notice) => {
    if (notice.revokedKeyIds) keys.verified.forget(notice.revokedKeyIds);
  });
  const readRouting = new ReadRouting(db, replica?.db ?? null, {
    waitMs: replica?.waitMs ?? defaults.readReplicaWaitMs,
    maxKeys: defaults.readReplicaKeys,
    positionTtlMs: defaults.readReplicaPositionTtlMs,
    pollMs: defaults.readReplicaPollMs,
    complaintIntervalMs: defaults.readReplicaComplaintMs,
    log: replica?.log,
  });
  return {
    db,
    reads: () => readRouting.reads(),
    readRouting,
    settings: merged,
    events,
    agentUrlRefusal: (url) => agentAddresses.refusalForUrl(url),
    heavyReads: new ConcurrencyGate({
      concurrency: merged.heavyReadConcurrency,
      queue: merged.heavyReadQueue,
      // One caller may fill every place but not the line behind them.
      perOwner: merged.heavyReadConcurrency,
      retryAfterMs: defaults.heavyReadRetryAfterMs,
      what: 'whole-history reads',
      share:
        merged.heavyReadShareMsPerSecond > 0
          ? { perSecondMs: merged.heavyReadShareMsPerSecond, burstMs: merged.heavyReadShareBurstMs }
          : undefined,
    }),
    liveHistories: new LiveHistories({ ttlMs: merged.liveHistoryTtlMs, maxBytes: merged.liveHistoryMaxBytes }),
    checkWebhookUrl: async (url) => {
      const refused = await webhookAddresses.refusalForUrl(url);
      if (refused) throw new HiatusError('bad_input', refused);
      return url;
    },
    postWebhook: (url, post) => postWebhook(webhookEndpoints, url, post),
    keys,
    agent: (baseUrl, options = {}) =>
      new AgentClient(baseUrl, {
        timeoutMs: merged.agentTimeoutMs,
        maxBytes: merged.maxSnapshotBytes,
        dispatcher: options.trusted ? trustedAgents : userAgents,
      }),
  };
}
