import { sql } from 'kysely';
import { AgentError } from '../agentapi/client.ts';
import { listTasks, type Task } from '../db/tasks.ts';
import type { Logger } from '../logger.ts';
import { startPeriodic } from '../periodic.ts';
import { systemActor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { LifecycleError } from './errors.ts';
import { pauseTask } from './pause.ts';

export type AutoPausePass = { checked: number; paused: string[] };

/**
 * One look at every active task's agent. An agent seen `running` resets its task's idle clock;
 * one seen `stable` or unreachable keeps it going (the clock lives in the database, so every
 * server process shares it). A task idle longer than its timeout is paused by the system with
 * reason `task_auto_pause`; when several processes try at once, the pause's lock lets one win.
 */
export async function autoPausePass(lc: Lifecycle, options: { concurrency?: number } = {}): Promise<AutoPausePass> {
  const paused: string[] = [];
  let checked = 0;
  let after: { createdAt: Date; id: string } | undefined;
  for (;;) {
    const { items, more } = await listTasks(lc.db, { status: 'active', limit: 200, after });
    await forEachLimited(items, options.concurrency ?? 8, async (task) => {
      checked++;
      if (await checkIdle(lc, task)) paused.push(task.id);
    });
    const last = items.at(-1);
    if (!more || !last) break;
    after = { createdAt: last.createdAt, id: last.id };
  }
  return { checked, paused };
}

async function checkIdle(lc: Lifecycle, task: Task): Promise<boolean> {
  const seen = await lc
    .agent(task.agentUrl)
    .status()
    .catch((error: unknown) => {
      if (error instanceof AgentError) return 'unreachable' as const;
      throw error;
    });
  if (seen === 'running') {
    await lc.db
      .updateTable('tasks')
      .set({ agent_idle_since: null, agent_last_running_at: sql`NOW()` })
      .where('id', '=', task.id)
      .execute();
    return false;
  }
  const row = await lc.db
    .updateTable('tasks')
    .set({ agent_idle_since: sql`COALESCE(agent_idle_since, NOW())` })
    .where('id', '=', task.id)
    .returning(sql<number>`EXTRACT(EPOCH FROM NOW() - agent_idle_since)::float8`.as('idle_seconds'))
    .executeTakeFirst();
  const timeout = task.idleTimeoutSeconds ?? lc.settings.defaultIdleTimeoutSeconds;
  if (!row || row.idle_seconds < timeout) return false;
  try {
    await pauseTask(lc, systemActor, task.id, { reason: 'task_auto_pause' });
    return true;
  } catch (error) {
    // Another process paused it first, or it changed meanwhile: nothing left to do.
    if (error instanceof LifecycleError && (error.code === 'conflict' || error.code === 'not_found')) return false;
    throw error;
  }
}

async function forEachLimited<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Runs `autoPausePass` every `intervalMs` until the returned function is called. */
export function startAutoPause(lc: Lifecycle, options: { intervalMs: number; log: Logger }): () => Promise<void> {
  return startPeriodic(
    'auto-pause',
    async () => {
      const { checked, paused } = await autoPausePass(lc);
      if (paused.length) options.log.info({ checked, paused }, 'auto-paused idle tasks');
    },
    options,
  );
}
