import { sql } from 'kysely';
import { AgentError, type AgentHistory } from '../agentapi/client.ts';
import type { Build } from '../db/builds.ts';
import type { PauseFailureCause } from '../db/schema.ts';
import { type StoredSnapshot, upsertSnapshot } from '../db/snapshots.ts';
import type { Task } from '../db/tasks.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError } from './errors.ts';
import { assertAllowed, type PauseReason } from './status.ts';
import { getTask } from './tasks.ts';
import { queueTransition } from './transition.ts';

export type SnapshotOutcome =
  | ({ taken: true } & StoredSnapshot)
  /** No fresh snapshot: why, and the previous snapshot (if any) stays as it was. */
  | { taken: false; reason: string };

export type PauseResult = { task: Task; build: Build; snapshot: SnapshotOutcome };

export type PauseOptions = {
  reason: PauseReason;
  /** Pause even when the agent cannot give its history; the previous snapshot stays. */
  withoutSnapshot?: boolean;
};

/**
 * Pauses an active task: takes a snapshot of the agent's whole conversation, then, in one
 * transaction that re-checks the status under the workspace lock, stores the snapshot and queues
 * the stop build. The agent is asked outside any transaction, so a slow agent holds no lock.
 *
 * A manual pause fails, changing nothing, when the agent is down or answers garbage, unless
 * `withoutSnapshot`; an auto-pause goes ahead (a dead agent is idle) and keeps the old snapshot.
 * A history over the limit is refused unless pausing without a snapshot.
 */
export async function pauseTask(
  lc: Lifecycle,
  actor: Actor,
  taskId: string,
  options: PauseOptions,
): Promise<PauseResult> {
  const started = performance.now();
  let fetchMs = 0;
  let dbMs = 0;
  try {
    const before = await getTask(lc, actor, taskId);
    assertAllowed('pause', before);

    let history: AgentHistory | undefined;
    let skipped = 'the caller asked to pause without a fresh snapshot';
    const fetchStarted = performance.now();
    try {
      history = await lc.agent(before.agentUrl).messages();
    } catch (error) {
      if (!(error instanceof AgentError)) throw error;
      const mayGoOn = options.reason === 'task_auto_pause' || options.withoutSnapshot === true;
      if (!mayGoOn) throw agentFailure(error);
      skipped = `no fresh snapshot: ${error.message}`;
    } finally {
      fetchMs = performance.now() - fetchStarted;
    }

    const transactionStarted = performance.now();
    const { build, value: snapshot } = await queueTransition(
      lc,
      actor,
      before,
      'pause',
      options.reason,
      async (trx) => {
        const stored = history && (await upsertSnapshot(trx, { taskId, messages: history.messages, source: 'pause' }));
        const snapshot: SnapshotOutcome = stored ? { taken: true, ...stored } : { taken: false, reason: skipped };
        const activity = await trx
          .selectFrom('tasks')
          .where('id', '=', taskId)
          .select(['agent_last_running_at', sql<Date>`NOW()`.as('now')])
          .executeTakeFirstOrThrow();
        const diff = {
          snapshot: stored
            ? { taken: true, messageCount: stored.messageCount, bytes: stored.bytes }
            : { taken: false, reason: skipped },
          agentLastRunningAt: activity.agent_last_running_at,
          idleSeconds: activity.agent_last_running_at
            ? (activity.now.getTime() - activity.agent_last_running_at.getTime()) / 1000
            : null,
        };
        return { value: snapshot, diff };
      },
    );
    dbMs = performance.now() - transactionStarted;
    const durationMs = performance.now() - started;
    lc.events.emit('pause', {
      reason: options.reason,
      outcome: 'succeeded',
      durationMs,
      fetchMs,
      dbMs,
      snapshotBytes: snapshot.taken ? snapshot.bytes : null,
    });
    return { task: await getTask(lc, actor, taskId), build, snapshot };
  } catch (error) {
    const cause = failureCause(error);
    lc.events.emit('pause', {
      reason: options.reason,
      outcome: 'failed',
      cause,
      durationMs: performance.now() - started,
      fetchMs,
      dbMs,
      snapshotBytes: null,
    });
    if (cause) await recordPauseFailure(lc, taskId, options.reason, cause, (error as Error).message);
    throw error;
  }
}

/** Why a pause failed, in telemetry's words; null for failures it does not count (no such task). */
function failureCause(error: unknown): PauseFailureCause | null {
  if (!(error instanceof LifecycleError)) return null;
  switch (error.code) {
    case 'agent_unreachable':
      return 'agent_down';
    case 'agent_bad_response':
      return 'garbage';
    case 'too_large':
      return 'too_large';
    case 'conflict':
      return 'conflict';
    default:
      return null;
  }
}

/** Counts a failed pause for telemetry. The pause changed nothing, so this is no audit record. */
async function recordPauseFailure(
  lc: Lifecycle,
  taskId: string,
  reason: PauseReason,
  cause: PauseFailureCause,
  detail: string,
): Promise<void> {
  await lc.db
    .insertInto('task_pause_failures')
    .values({ task_id: taskId, reason, cause, detail: detail.slice(0, 2000) })
    .execute()
    .catch(() => undefined); // telemetry must never turn a clear error into another one
}

/** The domain error for an agent that could not give its history. */
export function agentFailure(error: AgentError): LifecycleError {
  const code =
    error.failure === 'too_large'
      ? 'too_large'
      : error.failure === 'unreachable'
        ? 'agent_unreachable'
        : 'agent_bad_response';
  return new LifecycleError(code, `the agent's history could not be taken: ${error.message}`, { cause: error });
}
