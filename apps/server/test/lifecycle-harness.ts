import { randomUUID } from 'node:crypto';
import type { Db } from '../src/db/connection.ts';
import { insertUser } from '../src/db/users.ts';
import type { Actor } from '../src/lifecycle/actor.ts';
import { createLifecycle, type Lifecycle, type LifecycleSettings } from '../src/lifecycle/context.ts';
import { acquireBuildJob, completeBuildJob } from '../src/lifecycle/jobs.ts';
import { createTask } from '../src/lifecycle/tasks.ts';
import type { FakeAgent } from './fake-agent.ts';

export const fastSettings: Partial<LifecycleSettings> = { agentTimeoutMs: 1_000, resumeWaitMs: 5_000 };

export function testLifecycle(db: Db, settings: Partial<LifecycleSettings> = {}): Lifecycle {
  return createLifecycle(db, { ...fastSettings, ...settings });
}

/** A new user, as the actor the lifecycle sees. */
export async function newMember(db: Db, role: 'member' | 'admin' = 'member'): Promise<Actor & { kind: 'user' }> {
  const user = await insertUser(db, { username: `u-${randomUUID().slice(0, 12)}`, role });
  return { kind: 'user', userId: user.id, role: user.role };
}

/** Completes every pending build job, as a provisioner would: the tasks reach their next status. */
export async function settle(lc: Lifecycle, outcome: { error?: string } = {}): Promise<number> {
  let done = 0;
  for (let job = await acquireBuildJob(lc, 'test'); job; job = await acquireBuildJob(lc, 'test')) {
    await completeBuildJob(lc, job.build.id, outcome);
    done++;
  }
  return done;
}

/** A task of `actor` talking to `agent`, created and settled: it is active. */
export async function activeTask(
  lc: Lifecycle,
  actor: Actor,
  agent: FakeAgent,
  extra: { idleTimeoutSeconds?: number } = {},
) {
  const { task } = await createTask(lc, actor, {
    name: `task-${randomUUID().slice(0, 8)}`,
    prompt: 'make the build green',
    agentUrl: agent.url,
    ...extra,
  });
  await settle(lc);
  return task;
}

/** Everything a failed operation must leave as it was: builds, snapshots and their stats, tasks. */
export async function databaseState(db: Db) {
  const [builds, snapshots, stats, tasks] = await Promise.all([
    db.selectFrom('workspace_builds').selectAll().orderBy('id').execute(),
    db.selectFrom('task_snapshots').selectAll().orderBy('task_id').execute(),
    db.selectFrom('task_snapshot_stats').selectAll().orderBy('task_id').execute(),
    db.selectFrom('tasks').selectAll().orderBy('id').execute(),
  ]);
  return { builds, snapshots, stats, tasks };
}
