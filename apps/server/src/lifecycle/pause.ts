import { AgentError, type AgentHistory } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import type { Build } from '../db/builds.ts';
import { type StoredSnapshot, upsertSnapshot } from '../db/snapshots.ts';
import { findAgentActivity, type Task } from '../db/tasks.ts';
import type { Actor } from '../domain/actor.ts';
import { agentTrust } from '../domain/agent-trust.ts';
import { HiatusError } from '../domain/errors.ts';
import { assertAllowed, type PauseReason } from '../domain/lifecycle.ts';
import { Laps } from './laps.ts';
import { givePrePauseNotice } from './notice.ts';
import { holdTaskForPause, type PauseHold } from './pause-hold.ts';
import { getTask } from './tasks.ts';
import { commitTaskChange, type PolicyNote } from './transition.ts';

export type SnapshotOutcome =
  | ({ taken: true } & StoredSnapshot)
  /** No fresh snapshot: why, and the previous snapshot (if any) stays as it was. */
  | { taken: false; reason: string };

export type PauseResult = { task: Task; build: Build; snapshot: SnapshotOutcome };

export type PauseOptions = {
  reason: PauseReason;
  /** Pause even when the agent cannot give its history; the previous snapshot stays. */
  withoutSnapshot?: boolean;
  /** The policy the system pauses for (a schedule), named in the audit record. */
  policy?: PolicyNote;
};

/**
 * Pauses an active task: takes a snapshot of the agent's whole conversation, then, in one
 * transaction that re-checks the status under the workspace lock, stores the snapshot and queues
 * the stop build. The agent is asked outside any transaction, so a slow agent holds no lock.
 *
 * A manual pause fails, changing nothing, when the agent is down or answers garbage, unless
 * `withoutSnapshot`; an auto-pause goes ahead (a dead agent is idle) and keeps the old snapshot.
 * A history over the limit is refused unless pausing without a snapshot.
 *
 * A template's pre-pause notice is given first, so the agent's last answer is in the snapshot.
 * Then the pause holds the task (`holdTaskForPause`): no message is delivered to it from then on,
 * and those under way have arrived before the history is fetched, so every message the agent took
 * is in the snapshot; the change that pauses ends the hold, and a pause that fails lets it go.
 *
 * `laps` names the phases (notice, asking the agent, the transaction) for whoever measures them.
 */
export async function pauseTask(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  actor: Actor,
  taskId: string,
  options: PauseOptions,
  laps: Laps = new Laps(),
): Promise<PauseResult> {
  const before = await getTask(app, actor, taskId);
  assertAllowed('pause', before);
  const noticeGiven = await laps.time('notice', () => givePrePauseNotice(app, before));
  // From here no message goes to the agent; those on their way have arrived (see pause-hold.ts).
  const hold = await laps.time('hold', () => holdTaskForPause(app, before));
  try {
    return await pauseHeld(app, actor, before, options, { laps, hold, noticeGiven });
  } catch (error) {
    await hold.release().catch(() => undefined);
    throw error;
  }
}

/** The pause of a task its pause holds: the snapshot, then the change that ends the hold. */
async function pauseHeld(
  app: Pick<App, 'agent' | 'db' | 'events' | 'settings'>,
  actor: Actor,
  before: Task,
  options: PauseOptions,
  { laps, hold, noticeGiven }: { laps: Laps; hold: PauseHold; noticeGiven: boolean },
): Promise<PauseResult> {
  const taskId = before.id;
  let history: AgentHistory | undefined;
  let skipped = 'the caller asked to pause without a fresh snapshot';
  try {
    history = await laps.time('fetch', () => app.agent(before.agentUrl, agentTrust(before)).messages());
  } catch (error) {
    if (!(error instanceof AgentError)) throw error;
    const mayGoOn = options.reason === 'task_auto_pause' || options.withoutSnapshot === true;
    if (!mayGoOn) throw agentFailure(error);
    skipped = `no fresh snapshot: ${error.message}`;
  }

  const {
    task,
    build,
    value: snapshot,
  } = await laps.time('db', () =>
    commitTaskChange(app, actor, {
      operation: 'pause',
      reason: options.reason,
      task: before,
      effect: async (trx, _task, build) => {
        await hold.end(trx);
        await options.policy?.within?.(trx, build);
        const stored =
          history &&
          (await upsertSnapshot(trx, {
            taskId,
            messages: history.messages,
            source: 'pause',
            maxHistoryBytes: app.settings.maxHistoryBytes,
          }));
        const snapshot: SnapshotOutcome = stored ? { taken: true, ...stored } : { taken: false, reason: skipped };
        const activity = await findAgentActivity(trx, taskId);
        const diff = {
          ...options.policy?.diff,
          snapshot: stored
            ? { taken: true, messageCount: stored.messageCount, bytes: stored.bytes }
            : { taken: false, reason: skipped },
          ...(noticeGiven ? { prePauseNotice: 'delivered' } : {}),
          agentLastRunningAt: activity.lastRunningAt,
          idleSeconds: activity.lastRunningAt
            ? (activity.now.getTime() - activity.lastRunningAt.getTime()) / 1000
            : null,
        };
        return { value: snapshot, diff, snapshotBytes: stored ? stored.bytes : null };
      },
    }),
  );
  return { task, build, snapshot };
}

/** The domain error for an agent that could not give its history. */
export function agentFailure(error: AgentError): HiatusError {
  const code =
    error.failure === 'too_large'
      ? 'too_large'
      : // An address the policy refuses: the agent cannot be asked, as if it were down.
        error.failure === 'unreachable' || error.failure === 'not_allowed'
        ? 'agent_unreachable'
        : 'agent_bad_response';
  return new HiatusError(code, `the agent's history could not be taken: ${error.message}`, { cause: error });
}
