import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { invariantViolations } from '../../test/invariants.ts';
import type { App } from '../app.ts';
import { acquireBuildJob, completeBuildJob } from './jobs.ts';
import { meteredPause, meteredResume } from './metered.ts';

// Each app has its own connection pool (on PostgreSQL), as two server processes would.
describe.each(testBackends())('races on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });
  let two: App;
  beforeAll(() => {
    two = h.otherApp();
    h.agent.say(20, 500);
  });

  const manual = { reason: 'task_manual_pause' } as const;
  const stopBuilds = (workspaceId: string) =>
    h.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', workspaceId)
      .where('transition', '=', 'stop')
      .selectAll()
      .execute();

  beforeEach(() => {
    h.agent.mode = 'ok';
  });

  it('lets exactly one of two racing pauses succeed', async () => {
    for (let round = 0; round < 5; round++) {
      const task = await h.task();
      const results = await Promise.allSettled([
        meteredPause(h.app, h.alice, task.id, manual),
        meteredPause(two, h.alice, task.id, manual),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      // The loser is refused by the winner's hold on the task, or (later) by its pausing state.
      expect(refused.reason).toMatchObject({
        code: 'conflict',
        message: expect.stringMatching(/another pause of it is under way|it is pausing/),
      });
      expect(await stopBuilds(task.workspaceId)).toHaveLength(1);
    }
  });

  it('lets a manual and an auto-pause race with one winner', async () => {
    const task = await h.task();
    const results = await Promise.allSettled([
      meteredPause(h.app, h.alice, task.id, manual),
      meteredPause(two, { kind: 'system' }, task.id, { reason: 'task_auto_pause' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(await stopBuilds(task.workspaceId)).toHaveLength(1);
  });

  it('keeps a pause racing a resume consistent: builds alternate, numbers have no gaps', async () => {
    const task = await h.task();
    await meteredPause(h.app, h.alice, task.id, manual);
    await h.settle();
    // Paused: a resume and (once active) pauses fire from both sides at once, many times over.
    for (let round = 0; round < 6; round++) {
      await Promise.allSettled([
        meteredResume(h.app, h.alice, task.id),
        meteredResume(two, h.alice, task.id),
        meteredPause(two, h.alice, task.id, manual),
      ]);
      await h.settle();
      await Promise.allSettled([
        meteredPause(h.app, h.alice, task.id, manual),
        meteredPause(two, h.alice, task.id, manual),
        meteredResume(two, h.alice, task.id),
      ]);
      await h.settle();
    }
    expect(await invariantViolations(h.db)).toEqual([]);
    const builds = await h.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', task.workspaceId)
      .selectAll()
      .execute();
    expect(builds).toHaveLength(14); // the first start and pause, then one resume and one pause in each round
  });

  it('gives each pending job to exactly one of two provisioners', async () => {
    const tasks = await Promise.all(Array.from({ length: 12 }, () => h.task()));
    await Promise.all(tasks.map((t) => meteredPause(h.app, h.alice, t.id, manual)));
    const taken: string[] = [];
    const provision = async (app: App, id: string) => {
      for (let job = await acquireBuildJob(app, id); job; job = await acquireBuildJob(app, id)) {
        taken.push(job.build.id);
        await completeBuildJob(app, job.build.id, { holder: id });
      }
    };
    await Promise.all([provision(h.app, 'p1'), provision(two, 'p2'), provision(h.app, 'p3'), provision(two, 'p4')]);
    expect(taken).toHaveLength(12);
    expect(new Set(taken).size).toBe(12);
    const left = await h.db
      .selectFrom('workspace_builds')
      .where('job_status', 'in', ['pending', 'running'])
      .selectAll()
      .execute();
    expect(left).toEqual([]);
  });
});
