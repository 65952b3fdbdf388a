import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { markAgentIdle } from '../db/tasks.ts';
import { autoPausePass } from './auto-pause.ts';
import { meteredResume } from './metered.ts';
import { getSnapshot } from './snapshots.ts';
import { getTask } from './tasks.ts';

describe.each(testBackends())('auto-pause on %s', (backend) => {
  // A default so long that only tasks with their own short timeout are ever idle enough.
  const h = useHarness(backend, { defaultIdleTimeoutSeconds: 3600 }, { say: 4 });

  it('pauses a stable agent idle past its timeout, as the system, with a fresh snapshot', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    const first = await autoPausePass(h.app);
    expect(first.paused).not.toContain(task.id); // idle clock starts now
    await h.idleFor(task.id, 61);
    const second = await autoPausePass(h.app);
    expect(second.paused).toContain(task.id);
    const paused = await getTask(h.app, h.alice, task.id);
    expect(paused.status).toBe('pausing');
    expect(paused.latestBuild).toMatchObject({ reason: 'task_auto_pause', initiatorId: null, transition: 'stop' });
    expect((await getSnapshot(h.app, h.alice, task.id)).messageCount).toBe(4);
  });

  it('does not pause a busy h.agent, and a busy look resets the idle clock', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 600);
    h.agent.status = 'running';
    expect((await autoPausePass(h.app)).paused).not.toContain(task.id);
    const row = await h.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect(row.agent_idle_since).toBeNull();
    expect(row.agent_last_running_at).toBeInstanceOf(Date);
    h.agent.status = 'stable';
    expect((await autoPausePass(h.app)).paused).not.toContain(task.id);
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('pauses a task whose agent is unreachable once idle long enough, keeping the old snapshot', async () => {
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 120);
    await h.agent.stop();
    expect((await autoPausePass(h.app)).paused).toContain(task.id);
    await expect(getSnapshot(h.app, h.alice, task.id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('uses the service default for a task without a timeout of its own', async () => {
    const task = await h.task();
    await h.idleFor(task.id, 3000);
    expect((await autoPausePass(h.app)).paused).not.toContain(task.id);
    await h.idleFor(task.id, 3601);
    expect((await autoPausePass(h.app)).paused).toContain(task.id);
  });

  it('pauses each idle task once when two processes look at the same time', async () => {
    const tasks = await Promise.all([1, 2, 3].map(() => h.task({ idleTimeoutSeconds: 30 })));
    await Promise.all(tasks.map((t) => h.idleFor(t.id, 31)));
    const [a, b] = await Promise.all([autoPausePass(h.app), autoPausePass(h.otherApp())]);
    const paused = [...a.paused, ...b.paused].filter((id) => tasks.some((t) => t.id === id));
    expect(paused.sort()).toEqual(tasks.map((t) => t.id).sort());
    const stops = await h.db
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
    const task = await h.task({ idleTimeoutSeconds: 60 });
    await h.idleFor(task.id, 61);
    await autoPausePass(h.app);
    await h.settle();
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    expect((await autoPausePass(h.app)).paused).not.toContain(task.id);
  });

  it('writes no new version of a task whose agent stays idle: only the start of its clock is written', async () => {
    const task = await h.task({ idleTimeoutSeconds: 600 });
    const version = async () =>
      (await sql<{ xmin: string }>`SELECT xmin::text FROM tasks WHERE id = ${task.id}`.execute(h.db)).rows[0]!.xmin;
    const idle = async () => (await markAgentIdle(h.db, task.id)) ?? Number.NaN;
    expect(await idle()).toBe(0); // the clock starts: written
    // Two minutes on, as far as the row can tell; later looks keep counting from that start.
    await h.idleFor(task.id, 120);
    const started = await version();
    expect(await idle()).toBeGreaterThanOrEqual(120);
    expect(await idle()).toBeGreaterThanOrEqual(120);
    expect(await version()).toBe(started);
  });
});
