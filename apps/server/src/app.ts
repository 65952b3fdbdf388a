import { EventEmitter } from 'node:events';
import { AgentClient } from './agentapi/client.ts';
import type { Build } from './db/builds.ts';
import type { Db } from './db/connection.ts';
import { defaults } from './defaults.ts';
import type { PauseReason } from './domain/lifecycle.ts';

/** The settings the services read, from the configuration (each defaults to `defaults`). */
export type AppSettings = {
  agentTimeoutMs: number;
  maxSnapshotBytes: number;
  defaultIdleTimeoutSeconds: number;
  resumeWaitMs: number;
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

/** A resume attempt ended; for metrics. */
export type ResumeEvent = { outcome: 'succeeded' | 'failed'; durationMs: number };

/**
 * In-process notifications: the built-in provisioner and watchers follow builds, metrics follow
 * everything. A service never waits for a listener.
 */
export class AppEvents extends EventEmitter<{
  build: [BuildEvent];
  pause: [PauseEvent];
  resume: [ResumeEvent];
}> {}

/**
 * The app's services share this: the database, the settings, the event bus and a way to reach an
 * agent. No HTTP and no tRPC: the API and the background loops both work through it.
 */
export type App = {
  db: Db;
  settings: AppSettings;
  events: AppEvents;
  /** A client for the agent at `baseUrl`; null (no URL yet) gives one whose calls fail as unreachable. */
  agent(baseUrl: string | null): AgentClient;
};

export function createApp(db: Db, settings: Partial<AppSettings> = {}): App {
  const merged: AppSettings = {
    agentTimeoutMs: settings.agentTimeoutMs ?? defaults.agentTimeoutMs,
    maxSnapshotBytes: settings.maxSnapshotBytes ?? defaults.maxSnapshotBytes,
    defaultIdleTimeoutSeconds: settings.defaultIdleTimeoutSeconds ?? defaults.defaultIdleTimeoutSeconds,
    resumeWaitMs: settings.resumeWaitMs ?? defaults.resumeWaitMs,
  };
  const events = new AppEvents();
  events.setMaxListeners(0);
  return {
    db,
    settings: merged,
    events,
    agent: (baseUrl) =>
      new AgentClient(baseUrl, { timeoutMs: merged.agentTimeoutMs, maxBytes: merged.maxSnapshotBytes }),
  };
}
