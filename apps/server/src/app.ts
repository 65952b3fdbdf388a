// The app's services and what they share, as types only: a leaf below the services (it imports
// nothing above db/), so a service depends on what it uses, never on how it is built. The
// composition root that builds an App is create-app.ts, imported by server.ts and tests alone.
import type { EventEmitter } from 'node:events';
import type { AgentClient, AgentHistory } from './agentapi/client.ts';
import type { Build } from './db/builds.ts';
import type { Db } from './db/connection.ts';
import type { ChangeNotice } from './db/events.ts';
import type { VerifiedKey } from './domain/actor.ts';
import type { PauseReason } from './domain/lifecycle.ts';
import type { Gate } from './limits/concurrency.ts';
import type { WebhookPost } from './net/post-webhook.ts';

/** The settings the services read, from the configuration (each defaults to `defaults`). */
export type AppSettings = {
  agentTimeoutMs: number;
  maxSnapshotBytes: number;
  /** A task's whole history (kept segments and latest snapshot) is held to this many bytes (HIATUS_MAX_HISTORY_BYTES). */
  maxHistoryBytes: number;
  defaultIdleTimeoutSeconds: number;
  /**
   * Networks (CIDRs) and host names a user's agent may be at beyond public addresses
   * (HIATUS_ALLOWED_AGENT_NETWORKS); loopback, private, link-local and metadata ones are refused otherwise.
   */
  allowedAgentNetworks: readonly string[];
  /**
   * Networks (CIDRs) and host names where the agents a template's driver reports may be, and nowhere
   * else (HIATUS_DRIVER_AGENT_NETWORKS): checked when a start reports its `agentUrl`, and at every connection.
   */
  driverAgentNetworks: readonly string[];
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

/** What the in-process notifications carry, by name. */
export type AppEventMap = {
  build: [BuildEvent];
  /** Something committed that watchers should look at, here or (through notifications) in another process. */
  change: [ChangeNotice];
  pause: [PauseEvent];
  resume: [ResumeEvent];
  delivery: [DeliveryEvent];
  autoPause: [AutoPauseEvent];
};

/**
 * In-process notifications: the built-in provisioner and watchers follow builds, metrics follow
 * everything. A service never waits for a listener.
 */
export type AppEvents = EventEmitter<AppEventMap>;

/** Chooses per request between the read replica and the primary (db/read-routing.ts). */
export interface ReadRouter {
  /** The database for the current request's lag-tolerant reads. */
  reads(): Db;
  /** After `keyId`'s write committed: its next replica reads wait for the replica to pass this point. */
  noteWrite(keyId: string): Promise<void>;
  /** Runs `call` with its lag-tolerant reads on the replica when `keyId` may read there. */
  run<T>(keyId: string, call: () => Promise<T>): Promise<T>;
}

/** Agents' histories as last fetched, for the live log's pages (agentapi/live-history.ts). */
export interface LiveHistoryCache {
  get(taskId: string, agentUrl: string | null, load: () => Promise<AgentHistory>): Promise<AgentHistory>;
  forget(taskId: string, agentUrl: string | null): void;
}

/** API keys a process verified recently (auth/verified-keys.ts). */
export interface VerifiedKeyCache {
  get(id: string): VerifiedKey | undefined;
  /** Taken before a lookup: what it finds is kept only if no eviction came in between. */
  mark(): number;
  remember(key: VerifiedKey, mark: number): void;
  forget(ids: readonly string[]): void;
  /** Notifications may have been missed: start again from nothing. */
  restart(): void;
  /** Notifications are not followed for now: serve nothing until `restart`. */
  suspend(): void;
}

/** Keys' last uses, written in the background in one statement per flush. */
export interface KeyUseLog {
  readonly resolutionMs: number;
  note(id: string): void;
  /** The keys noted since the last call. */
  take(): string[];
}

/** Where a process keeps the keys it verified, and the uses it records in the background. */
export type KeyBook = { verified: VerifiedKeyCache; uses: KeyUseLog };

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
  readRouting: ReadRouter;
  settings: AppSettings;
  events: AppEvents;
  /**
   * Why a user's agent URL is refused (its form, or an address its host resolves to that the
   * operator does not allow), or null: checked when a task is created, and again at every
   * connection. A function rather than the policy itself: the SDK's bundled types stay small.
   */
  agentUrlRefusal(url: string): Promise<string | null>;
  /**
   * Why an `agentUrl` a template's driver reported is refused (its form, or an address its host
   * resolves to outside HIATUS_DRIVER_AGENT_NETWORKS), or null: checked when a start completes.
   */
  driverAgentUrlRefusal(url: string): Promise<string | null>;
  /** Whole-history reads wait here for a place, so the memory they hold stays bounded. */
  heavyReads: Gate;
  /** Agents' histories kept a few seconds for the live log's pages. */
  liveHistories: LiveHistoryCache;
  /**
   * A client for the agent at `baseUrl`; null (no URL yet) gives one whose calls fail as
   * unreachable. A user's URL is held to the address policy at every connection; `trusted` is for a
   * URL a template's driver reported (Hiatus started that agent itself), held at every connection to
   * where drivers' agents may be (HIATUS_DRIVER_AGENT_NETWORKS): see `agentTrust`.
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
