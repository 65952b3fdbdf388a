import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import type { Db } from '../db/connection.ts';
import {
  deleteEventsBefore,
  type EventFilter,
  findLatestEvent,
  insertEvents,
  lastEventId,
  listEvents,
  lockEvents,
  warnedSinceIdle,
} from '../db/events.ts';
import { insertPauseFailure, type PauseFailureCause } from '../db/pause-failures.ts';
import { findTask } from '../db/tasks.ts';
import { defaults } from '../defaults.ts';
import { type Actor, seesAllTasks } from '../domain/actor.ts';
import type { EventType, HiatusEvent, NewEvent } from '../domain/events.ts';
import type { PauseReason } from '../domain/lifecycle.ts';
import { ChangeWaiter } from './changes.ts';
import { assertKeyStillValid } from './stream-keys.ts';

export type EventQuery = { taskId?: string; after?: string; types?: readonly EventType[]; limit: number };

/** Events the actor may see (their own tasks', or all for an admin), in commit order after `after`. */
export async function listEventsFor(
  app: Pick<App, 'reads'>,
  actor: Actor,
  query: EventQuery,
): Promise<{ items: HiatusEvent[]; nextCursor: string | null }> {
  const items = await listEvents(app.reads(), visible(actor, query));
  return { items, nextCursor: items.length === query.limit ? (items.at(-1)?.id ?? null) : null };
}

/**
 * The actor's events as they commit, from after `after` (or from now), until `signal` aborts: the
 * stored ones first, then each new one as soon as any process announces it. A reconnect that
 * passes the last id it saw misses nothing and sees nothing twice, ids being in commit order.
 */
export async function* watchEvents(
  app: Pick<App, 'db' | 'events'>,
  actor: Actor,
  query: { taskId?: string; after?: string; types?: readonly EventType[] },
  signal: AbortSignal,
  /** The key the watch was opened with: once revoked or expired, the watch ends with `unauthorized`. */
  key: { keyId?: string; keyCheckMs?: number } = {},
): AsyncGenerator<HiatusEvent> {
  const waiter = new ChangeWaiter(app, (notice) => notice.eventId !== undefined);
  const keyCheckMs = key.keyCheckMs ?? defaults.watchKeyCheckMs;
  let keyCheckedAt = Date.now();
  try {
    let cursor = query.after ?? (await lastEventId(app.db));
    while (!signal.aborted) {
      const page = await listEvents(app.db, visible(actor, { ...query, after: cursor, limit: defaults.eventPageSize }));
      for (const event of page) {
        cursor = event.id;
        yield event;
      }
      if (page.length < defaults.eventPageSize) {
        await waiter.wait(key.keyId ? keyCheckMs : defaults.watchFallbackPollMs, signal);
      }
      if (key.keyId && Date.now() - keyCheckedAt >= keyCheckMs) {
        await assertKeyStillValid(app.db, key.keyId);
        keyCheckedAt = Date.now();
      }
    }
  } finally {
    waiter.close();
  }
}

function visible(actor: Actor, query: EventQuery): EventFilter {
  return {
    ...query,
    ownerId: seesAllTasks(actor) || actor.kind !== 'user' ? undefined : actor.userId,
  };
}

/**
 * A pause that failed and changed nothing: counted by cause for telemetry and, when the agent
 * was the cause, announced as `task.pause_failed`, both in one transaction.
 */
export async function recordPauseFailure(
  app: Pick<App, 'db' | 'events'>,
  failure: { taskId: string; reason: PauseReason; cause: PauseFailureCause; message: string },
): Promise<void> {
  const eventId = await app.db.transaction().execute(async (trx: Db) => {
    const task = await findTask(trx, failure.taskId);
    if (!task) return undefined;
    await insertPauseFailure(trx, {
      taskId: failure.taskId,
      reason: failure.reason,
      cause: failure.cause,
      detail: failure.message,
    });
    // A pause refused by the task's state (another won the race) is counted, not announced.
    if (failure.cause === 'conflict') return undefined;
    const [event] = await insertEvents(trx, [
      {
        type: 'task.pause_failed',
        taskId: task.id,
        ownerId: task.ownerId,
        payload: { reason: failure.reason, cause: failure.cause, message: failure.message.slice(0, 500) },
      },
    ]);
    return event?.id;
  });
  if (eventId) app.events.emit('change', { eventId, taskId: failure.taskId });
}

/**
 * The events of a build job's end, recorded in the completion's transaction: a pause's stop that
 * succeeded is `task.paused` (with the reason and snapshot size its `task.pausing` gave), a
 * resume's start `task.resumed`, and any failed job `build.failed`. Returns the ids recorded.
 */
export async function recordJobEnd(trx: Db, build: Build, taskId: string | null): Promise<HiatusEvent[]> {
  if (!taskId) return [];
  const task = await findTask(trx, taskId);
  if (!task) return [];
  const base = { taskId, ownerId: task.ownerId };
  const events: NewEvent[] = [];
  if (build.jobStatus === 'failed') {
    events.push({
      ...base,
      type: 'build.failed',
      payload: { buildId: build.id, transition: build.transition, reason: build.reason, error: build.error },
    });
  } else if (build.jobStatus === 'succeeded' && build.transition === 'stop') {
    const pausing = await findLatestEvent(trx, taskId, 'task.pausing');
    if (pausing?.type === 'task.pausing' && pausing.payload.buildId === build.id) {
      events.push({ ...base, type: 'task.paused', payload: pausing.payload });
    }
  } else if (build.jobStatus === 'succeeded' && build.transition === 'start' && build.reason === 'task_resume') {
    events.push({ ...base, type: 'task.resumed', payload: { buildId: build.id } });
  }
  return insertEvents(trx, events);
}

/**
 * Warns a task's owner (`task.auto_pause_warning`) that auto-pause will stop it in
 * `idleTimeoutSeconds - idleSeconds` unless its agent works: once per idle period, whichever
 * process sees it first. Returns whether this call recorded the warning.
 */
export async function warnBeforeAutoPause(
  app: Pick<App, 'db' | 'events'>,
  task: { id: string; ownerId: string },
  idle: { idleSeconds: number; idleTimeoutSeconds: number },
): Promise<boolean> {
  const pauseAt = new Date(Date.now() + (idle.idleTimeoutSeconds - idle.idleSeconds) * 1000);
  const eventId = await app.db.transaction().execute(async (trx) => {
    await lockEvents(trx);
    if (await warnedSinceIdle(trx, task.id)) return undefined;
    const [event] = await insertEvents(trx, [
      {
        type: 'task.auto_pause_warning',
        taskId: task.id,
        ownerId: task.ownerId,
        payload: {
          idleSeconds: Math.floor(idle.idleSeconds),
          idleTimeoutSeconds: idle.idleTimeoutSeconds,
          pauseAt: pauseAt.toISOString(),
        },
      },
    ]);
    return event?.id;
  });
  if (eventId) app.events.emit('change', { eventId, taskId: task.id });
  return eventId !== undefined;
}

/** Removes events older than `days` (not those a delivery still waits for), in batches; returns how many. */
export async function removeOldEvents(app: Pick<App, 'db'>, days: number, batchSize: number): Promise<number> {
  const before = new Date(Date.now() - days * 86_400_000);
  let removed = 0;
  for (;;) {
    const batch = await deleteEventsBefore(app.db, before, batchSize);
    removed += batch;
    if (batch < batchSize) return removed;
  }
}
