import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { activeTask, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import type { Actor } from './actor.ts';
import { autoPausePass } from './auto-pause.ts';
import type { Lifecycle } from './context.ts';
import { resumeTask } from './resume.ts';
import { getSnapshot } from './snapshots.ts';
import { getTask } from './tasks.ts';

describe.each(testBackends())('auto-pause on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let other: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    // A default so long that only tasks with their own short timeout are ever idle enough.
    lc = testLifecycle(database.db, { agentTimeoutMs: 300, defaultIdleTimeoutSeconds: 3600 });
    other = testLifecycle(database.open(), { agentTimeoutMs: 300, defaultIdleTimeoutSeconds: 3600 });
    alice = await newMember(database.db);
  });
  afterAll(() => database.drop());
  beforeEach(async () => {
    agent = await new FakeAgent().start();
    agent.say(4);
    return () => agent.stop();
  });

  /** Makes the task's agent look idle since `seconds` ago, as if earlier passes had seen it so. */
  const idleFor = (taskId: string, seconds: number) =>
    database.db
      .updateTable('tasks')
      .set({ agent_idle_since: new Date(Date.now() - seconds * 1000) })
      .where('id', '=', taskId)
      .execute();

  it('pauses a stable agent idle past its timeout, as the system, with a fresh snapshot', async () => {
    const task = await activeTask(lc, alice, agent, { idleTimeoutSeconds: 60 });
    const first = await autoPausePass(lc);
    expect(first.paused).not.toContain(task.id); // idle clock starts now
    await idleFor(task.id, 61);
    const second = await autoPausePass(lc);
    expect(second.paused).toContain(task.id);
    const paused = await getTask(lc, alice, task.id);
    expect(paused.status).toBe('pausing');
    expect(paused.latestBuild).toMatchObject({ reason: 'task_auto_pause', initiatorId: null, transition: 'stop' });
    expect((await getSnapshot(lc, alice, task.id)).messageCount).toBe(4);
  });

  it('does not pause a busy agent, and a busy look resets the idle clock', async () => {
    const task = await activeTask(lc, alice, agent, { idleTimeoutSeconds: 60 });
    await idleFor(task.id, 600);
    agent.status = 'running';
    expect((await autoPausePass(lc)).paused).not.toContain(task.id);
    const row = await database.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect(row.agent_idle_since).toBeNull();
    expect(row.agent_last_running_at).toBeInstanceOf(Date);
    agent.status = 'stable';
    expect((await autoPausePass(lc)).paused).not.toContain(task.id);
    expect((await getTask(lc, alice, task.id)).status).toBe('active');
  });

  it('pauses a task whose agent is unreachable once idle long enough, keeping the old snapshot', async () => {
    const task = await activeTask(lc, alice, agent, { idleTimeoutSeconds: 60 });
    await idleFor(task.id, 120);
    await agent.stop();
    expect((await autoPausePass(lc)).paused).toContain(task.id);
    await expect(getSnapshot(lc, alice, task.id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('uses the service default for a task without a timeout of its own', async () => {
    const task = await activeTask(lc, alice, agent);
    await idleFor(task.id, 3000);
    expect((await autoPausePass(lc)).paused).not.toContain(task.id);
    await idleFor(task.id, 3601);
    expect((await autoPausePass(lc)).paused).toContain(task.id);
  });

  it('pauses each idle task once when two processes look at the same time', async () => {
    const tasks = await Promise.all([1, 2, 3].map(() => activeTask(lc, alice, agent, { idleTimeoutSeconds: 30 })));
    await Promise.all(tasks.map((t) => idleFor(t.id, 31)));
    const [a, b] = await Promise.all([autoPausePass(lc), autoPausePass(other)]);
    const paused = [...a.paused, ...b.paused].filter((id) => tasks.some((t) => t.id === id));
    expect(paused.sort()).toEqual(tasks.map((t) => t.id).sort());
    const stops = await database.db
      .selectFrom('workspace_builds')
      .where(
        'workspace_id',
        'in',
        tasks.map((t) => t.workspaceId),
      )
      .where('reason', '=', 'task_auto_pause')
      .selectAll()
      .execute();
    expect(stops).toHaveLength(3);
  });

  it('starts the idle clock afresh after a resume', async () => {
    const task = await activeTask(lc, alice, agent, { idleTimeoutSeconds: 60 });
    await idleFor(task.id, 61);
    await autoPausePass(lc);
    await settle(lc);
    await resumeTask(lc, alice, task.id);
    await settle(lc);
    expect((await autoPausePass(lc)).paused).not.toContain(task.id);
  });
});
