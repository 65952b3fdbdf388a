import { AgentError, type AgentHistory } from '../agentapi/client.ts';
import { type Build, insertNextBuild, lockWorkspace } from '../db/builds.ts';
import { type StoredSnapshot, upsertSnapshot } from '../db/snapshots.ts';
import { findTask, type Task } from '../db/tasks.ts';
import { type Actor, initiatorId } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError } from './errors.ts';
import { assertAllowed, type PauseReason } from './status.ts';
import { getTask } from './tasks.ts';

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
  const before = await getTask(lc, actor, taskId);
  assertAllowed('pause', before);

  let history: AgentHistory | undefined;
  let skipped = 'the caller asked to pause without a fresh snapshot';
  try {
    history = await lc.agent(before.agentUrl).messages();
  } catch (error) {
    if (!(error instanceof AgentError)) throw error;
    const mayGoOn = options.reason === 'task_auto_pause' || options.withoutSnapshot === true;
    if (!mayGoOn) throw agentFailure(error);
    skipped = `no fresh snapshot: ${error.message}`;
  }

  const { build, snapshot } = await lc.db.transaction().execute(async (trx) => {
    await lockWorkspace(trx, before.workspaceId);
    const task = await findTask(trx, taskId);
    if (!task) throw new LifecycleError('not_found', `task ${taskId} not found`);
    assertAllowed('pause', task);
    const stored = history && (await upsertSnapshot(trx, { taskId, messages: history.messages, source: 'pause' }));
    const build = await insertNextBuild(trx, {
      workspaceId: task.workspaceId,
      transition: 'stop',
      reason: options.reason,
      initiatorId: initiatorId(actor),
    });
    const snapshot: SnapshotOutcome = stored ? { taken: true, ...stored } : { taken: false, reason: skipped };
    return { build, snapshot };
  });
  lc.events.emit('build', { taskId, workspaceId: build.workspaceId, build });
  return { task: await getTask(lc, actor, taskId), build, snapshot };
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
