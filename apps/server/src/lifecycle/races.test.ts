import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { invariantViolations } from '../../test/invariants.ts';
import { activeTask, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { acquireBuildJob, completeBuildJob } from './jobs.ts';
import { pauseTask } from './pause.ts';
import { resumeTask } from './resume.ts';

// Each lifecycle has its own connection pool (on PostgreSQL), as two server processes would.
describe.each(testBackends())('races on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let one: Lifecycle;
  let two: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    one = testLifecycle(database.db);
    two = testLifecycle(database.open());
    alice = await newMember(database.db);
    agent = await new FakeAgent().start();
    agent.say(20, 500);
  });
  afterAll(async () => {
    await agent.stop();
    await database.drop();
  });

  const manual = { reason: 'task_manual_pause' } as const;
  const stopBuilds = (workspaceId: string) =>
    database.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', workspaceId)
      .where('transition', '=', 'stop')
      .selectAll()
      .execute();

  beforeEach(() => {
    agent.mode = 'ok';
  });

  it('lets exactly one of two racing pauses succeed', async () => {
    for (let round = 0; round < 5; round++) {
      const task = await activeTask(one, alice, agent);
      const results = await Promise.allSettled([
        pauseTask(one, alice, task.id, manual),
        pauseTask(two, alice, task.id, manual),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(refused.reason).toMatchObject({ code: 'conflict', message: expect.stringContaining('it is pausing') });
      expect(await stopBuilds(task.workspaceId)).toHaveLength(1);
    }
  });

  it('lets a manual and an auto-pause race with one winner', async () => {
    const task = await activeTask(one, alice, agent);
    const results = await Promise.allSettled([
      pauseTask(one, alice, task.id, manual),
      pauseTask(two, { kind: 'system' }, task.id, { reason: 'task_auto_pause' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(await stopBuilds(task.workspaceId)).toHaveLength(1);
  });

  it('keeps a pause racing a resume consistent: builds alternate, numbers have no gaps', async () => {
    const task = await activeTask(one, alice, agent);
    await pauseTask(one, alice, task.id, manual);
    await settle(one);
    // Paused: a resume and (once active) pauses fire from both sides at once, many times over.
    for (let round = 0; round < 6; round++) {
      await Promise.allSettled([
        resumeTask(one, alice, task.id),
        resumeTask(two, alice, task.id),
        pauseTask(two, alice, task.id, manual),
      ]);
      await settle(one);
      await Promise.allSettled([
        pauseTask(one, alice, task.id, manual),
        pauseTask(two, alice, task.id, manual),
        resumeTask(two, alice, task.id),
      ]);
      await settle(two);
    }
    expect(await invariantViolations(database.db)).toEqual([]);
    const builds = await database.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', task.workspaceId)
      .selectAll()
      .execute();
    expect(builds).toHaveLength(14); // the first start and pause, then one resume and one pause in each round
  });

  it('gives each pending job to exactly one of two provisioners', async () => {
    const tasks = await Promise.all(Array.from({ length: 12 }, () => activeTask(one, alice, agent)));
    await Promise.all(tasks.map((t) => pauseTask(one, alice, t.id, manual)));
    const taken: string[] = [];
    const provision = async (lc: Lifecycle, id: string) => {
      for (let job = await acquireBuildJob(lc, id); job; job = await acquireBuildJob(lc, id)) {
        taken.push(job.build.id);
        await completeBuildJob(lc, job.build.id, { provisionerId: id });
      }
    };
    await Promise.all([provision(one, 'p1'), provision(two, 'p2'), provision(one, 'p3'), provision(two, 'p4')]);
    expect(taken).toHaveLength(12);
    expect(new Set(taken).size).toBe(12);
    const left = await database.db
      .selectFrom('workspace_builds')
      .where('job_status', 'in', ['pending', 'running'])
      .selectAll()
      .execute();
    expect(left).toEqual([]);
  });
});
