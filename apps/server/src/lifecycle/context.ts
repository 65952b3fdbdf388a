import { EventEmitter } from 'node:events';
import { AgentClient } from '../agentapi/client.ts';
import type { Build } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import type { PauseReason } from './status.ts';

/** Limits and timings of the lifecycle, from the configuration. */
export type LifecycleSettings = {
  /** Longest wait for an agent's answer. */
  agentTimeoutMs: number;
  /** Largest conversation history kept in a snapshot (and read live), in bytes. */
  maxSnapshotBytes: number;
  /** Idle time after which auto-pause stops a task that sets no timeout of its own. */
  defaultIdleTimeoutSeconds: number;
  /** How long `send` with `resumeIfPaused` waits for the task to become active. */
  resumeWaitMs: number;
};

export const defaultLifecycleSettings: LifecycleSettings = {
  agentTimeoutMs: 5_000,
  maxSnapshotBytes: 32 * 1024 * 1024,
  defaultIdleTimeoutSeconds: 30 * 60,
  resumeWaitMs: 60_000,
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
 * everything. The lifecycle never waits for a listener.
 */
export class LifecycleEvents extends EventEmitter<{
  build: [BuildEvent];
  pause: [PauseEvent];
  resume: [ResumeEvent];
}> {}

/** What the lifecycle functions work with: no HTTP, only the database, agents and settings. */
export type Lifecycle = {
  db: Db;
  settings: LifecycleSettings;
  events: LifecycleEvents;
  agent(baseUrl: string): AgentClient;
};

export function createLifecycle(db: Db, settings: Partial<LifecycleSettings> = {}): Lifecycle {
  const merged = { ...defaultLifecycleSettings, ...settings };
  const events = new LifecycleEvents();
  events.setMaxListeners(0);
  return {
    db,
    settings: merged,
    events,
    agent: (baseUrl) =>
      new AgentClient(baseUrl, { timeoutMs: merged.agentTimeoutMs, maxBytes: merged.maxSnapshotBytes }),
  };
}
