import type { BuildReason, PauseReason, WorkspaceTransition } from './lifecycle.ts';

/**
 * Lifecycle events: what happened to a task, as the outbox stores it, watchers see it and webhooks
 * carry it. Each type has its payload; the union below is what the SDK's `verifyWebhook` returns.
 */
export type EventPayloads = {
  /** A task was created; its workspace's first start is queued. */
  'task.created': { name: string; templateId: string | null };
  /** A pause was committed: the snapshot is stored (or skipped) and the stop build is queued. */
  'task.pausing': { reason: PauseReason; buildId: string; snapshotBytes: number | null };
  /** The stop build succeeded: the workspace is down. */
  'task.paused': { reason: PauseReason; buildId: string; snapshotBytes: number | null };
  /** A pause was refused or failed before anything changed (the agent was down, answered garbage…). */
  'task.pause_failed': { reason: PauseReason; cause: string; message: string };
  /** A resume was committed: the start build is queued. */
  'task.resuming': { buildId: string };
  /** The resume's start build succeeded: the agent is back. */
  'task.resumed': { buildId: string };
  /** The task was deleted; its workspace's delete build is queued. */
  'task.deleted': { buildId: string };
  /** A build job failed (a start, stop or delete of the task's workspace). */
  'build.failed': { buildId: string; transition: WorkspaceTransition; reason: BuildReason; error: string | null };
  /** The task has been idle long enough that auto-pause will stop it at `pauseAt` unless it works. */
  'task.auto_pause_warning': { idleSeconds: number; idleTimeoutSeconds: number; pauseAt: string };
  /** `tasks.keepAlive`: auto-pause leaves the task alone until `until`. */
  'task.keep_alive': { until: string; forSeconds: number };
  /** A message was stored in the task's inbox (`resumed`: its send also queued the task's resume). */
  'task.message_queued': { messageId: string; resumed: boolean };
  /** A queued message was taken by the agent, after `attempts` tries. */
  'task.message_delivered': { messageId: string; attempts: number };
  /** A queued message was cancelled: it never goes. */
  'task.message_cancelled': { messageId: string };
  /** The task's schedule will pause it at `pauseAt`, when its window (in `timeZone`) closes. */
  'task.schedule_pause_warning': { pauseAt: string; timeZone: string };
  /** The task has been paused since `pausedSince`; the retention of paused tasks deletes it at `deleteAt`. */
  'task.retention_warning': { pausedSince: string; retentionDays: number; deleteAt: string };
  /**
   * The task's history grew past its bound (HIATUS_MAX_HISTORY_BYTES): its oldest kept segment
   * (an earlier agent lifetime's conversation) was dropped for good.
   */
  'task.history_dropped': {
    segment: number;
    messageCount: number;
    bytes: number;
    startedAt: string | null;
    pausedAt: string;
    maxHistoryBytes: number;
  };
  /** Sent by `webhooks.test`; belongs to no task. */
  'webhook.test': { webhookId: string };
};

export type EventType = keyof EventPayloads;

export const eventTypes = Object.freeze([
  'task.created',
  'task.pausing',
  'task.paused',
  'task.pause_failed',
  'task.resuming',
  'task.resumed',
  'task.deleted',
  'build.failed',
  'task.auto_pause_warning',
  'task.keep_alive',
  'task.message_queued',
  'task.message_delivered',
  'task.message_cancelled',
  'task.schedule_pause_warning',
  'task.retention_warning',
  'task.history_dropped',
  'webhook.test',
] as const satisfies readonly EventType[]);

/** An event to record: its type, the task and the task's owner, and the type's payload. */
export type NewEvent = {
  [T in EventType]: { type: T; taskId: string | null; ownerId: string; payload: EventPayloads[T] };
}[EventType];

/** A recorded event. `id` grows in commit order: a reader that saw id n has seen every earlier one. */
export type HiatusEvent = {
  [T in EventType]: {
    id: string;
    type: T;
    taskId: string | null;
    ownerId: string;
    occurredAt: Date;
    payload: EventPayloads[T];
  };
}[EventType];
