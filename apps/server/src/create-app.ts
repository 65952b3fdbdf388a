// The composition root: builds the App the services share from a database and settings. Only
// server.ts and tests import it; services depend on the App type (app.ts), never on this.
import { EventEmitter } from 'node:events';
import { AgentClient } from './agentapi/client.ts';
import { LiveHistories } from './agentapi/live-history.ts';
import type { App, AppEventMap, AppSettings, KeyBook } from './app.ts';
import { KeyUses, VerifiedKeys } from './auth/verified-keys.ts';
import type { Db } from './db/connection.ts';
import { ReadRouting } from './db/read-routing.ts';
import { defaults } from './defaults.ts';
import { HiatusError } from './domain/errors.ts';
import { ConcurrencyGate } from './limits/concurrency.ts';
import type { Logger } from './logger.ts';
import { createOutboundDispatcher } from './net/outbound-dispatcher.ts';
import { postWebhook } from './net/post-webhook.ts';
import { driverAgentSubject, OutboundAddressPolicy, parseAllowance, webhookSubject } from './net/url-policy.ts';

export function createApp(
  db: Db,
  settings: Partial<AppSettings> = {},
  replica: { db: Db; waitMs: number; log?: Logger } | null = null,
): App {
  const merged: AppSettings = {
    agentTimeoutMs: settings.agentTimeoutMs ?? defaults.agentTimeoutMs,
    maxSnapshotBytes: settings.maxSnapshotBytes ?? defaults.maxSnapshotBytes,
    maxHistoryBytes: settings.maxHistoryBytes ?? defaults.maxHistoryBytes,
    defaultIdleTimeoutSeconds: settings.defaultIdleTimeoutSeconds ?? defaults.defaultIdleTimeoutSeconds,
    allowedAgentNetworks: settings.allowedAgentNetworks ?? defaults.allowedAgentNetworks,
    driverAgentNetworks: settings.driverAgentNetworks ?? defaults.driverAgentNetworks,
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
  const agentAddresses = new OutboundAddressPolicy(parseAllowance(merged.allowedAgentNetworks), {
    resolveTimeoutMs: merged.agentTimeoutMs,
  });
  const connectTimeoutMs = merged.agentTimeoutMs;
  const userAgents = createOutboundDispatcher(agentAddresses, { connectTimeoutMs });
  // The agents drivers report may be only where the operator says (loopback and private networks by default).
  const driverAgentAddresses = new OutboundAddressPolicy(parseAllowance(merged.driverAgentNetworks), {
    resolveTimeoutMs: merged.agentTimeoutMs,
    subject: driverAgentSubject,
    publicAddresses: false,
  });
  const trustedAgents = createOutboundDispatcher(driverAgentAddresses, { connectTimeoutMs });
  const webhookAddresses = new OutboundAddressPolicy(parseAllowance(merged.allowedWebhookNetworks), {
    resolveTimeoutMs: merged.agentTimeoutMs,
    subject: webhookSubject,
  });
  const webhookEndpoints = createOutboundDispatcher(webhookAddresses, { connectTimeoutMs });
  const events = new EventEmitter<AppEventMap>();
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
    driverAgentUrlRefusal: (url) => driverAgentAddresses.refusalForUrl(url),
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
