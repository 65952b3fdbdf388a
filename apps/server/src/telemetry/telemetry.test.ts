import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { activeTask, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import type { Actor } from '../lifecycle/actor.ts';
import type { Lifecycle } from '../lifecycle/context.ts';
import { pauseTask } from '../lifecycle/pause.ts';
import { resumeTask } from '../lifecycle/resume.ts';
import { lifecycleTelemetry } from './lifecycle.ts';
import { createMetrics } from './metrics.ts';

describe.each(testBackends())('telemetry on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    lc = testLifecycle(database.db, { agentTimeoutMs: 300 });
    alice = await newMember(database.db);
    agent = await new FakeAgent().start();
    agent.say(10, 100);
  });
  afterAll(async () => {
    await agent.stop();
    await database.drop();
  });

  it('tells the three task reasons apart from ordinary builds, with pause-time, idle and size figures', async () => {
    // A seeded history: two tasks; one paused by hand, resumed, auto-paused; one paused and left.
    const first = await activeTask(lc, alice, agent);
    const second = await activeTask(lc, alice, agent);
    await pauseTask(lc, alice, first.id, { reason: 'task_manual_pause' });
    await pauseTask(lc, alice, second.id, { reason: 'task_manual_pause' });
    await settle(lc);
    // The stop finished 90 seconds before the resume.
    await database.db
      .updateTable('workspace_builds')
      .set({
        completed_at: sql`NOW() - interval '90 seconds'`,
        started_at: sql`NOW() - interval '91 seconds'`,
        created_at: sql`NOW() - interval '92 seconds'`,
      })
      .where('workspace_id', '=', first.workspaceId)
      .where('transition', '=', 'stop')
      .execute();
    await resumeTask(lc, alice, first.id);
    await settle(lc);
    await database.db
      .updateTable('tasks')
      .set({ agent_last_running_at: sql`NOW() - interval '600 seconds'` })
      .where('id', '=', first.id)
      .execute();
    await pauseTask(lc, { kind: 'system' }, first.id, { reason: 'task_auto_pause' });
    agent.mode = 'error500';
    await expect(pauseTask(lc, alice, second.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'conflict',
    });
    agent.mode = 'ok';

    const now = Date.now();
    const buckets = await lifecycleTelemetry(database.db, {
      since: new Date(now - 3_600_000),
      until: new Date(now + 60_000),
      bucket: 'day',
    });
    const builds = buckets.flatMap((b) => b.builds);
    const count = (reason: string, transition: string) =>
      builds.filter((b) => b.reason === reason && b.transition === transition).reduce((n, b) => n + b.count, 0);
    expect(count('initiator', 'start')).toBe(2);
    expect(count('task_manual_pause', 'stop')).toBe(2);
    expect(count('task_resume', 'start')).toBe(1);
    expect(count('task_auto_pause', 'stop')).toBe(1);

    const all = buckets.at(-1)!;
    expect(all.pausedSeconds.count).toBe(1);
    expect(all.pausedSeconds.p50).toBeGreaterThanOrEqual(89);
    expect(all.pausedSeconds.p50).toBeLessThan(120);
    expect(all.idleBeforeAutoPauseSeconds.count).toBe(1);
    expect(all.idleBeforeAutoPauseSeconds.p50).toBeGreaterThanOrEqual(599);
    expect(all.snapshotBytes.count).toBe(3);
    expect(all.snapshotBytes.max).toBeGreaterThan(1000);
    expect(all.snapshotMessages.p50).toBe(10);
    expect(all.pauseFailures).toEqual({ conflict: 1 });
  });

  it('exposes build counters, pause and resume latency and tasks by status as Prometheus metrics', async () => {
    const metrics = createMetrics(lc);
    try {
      const task = await activeTask(lc, alice, agent);
      await pauseTask(lc, alice, task.id, { reason: 'task_manual_pause' });
      await settle(lc);
      await resumeTask(lc, alice, task.id);
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/hiatus_builds_total\{transition="stop",reason="task_manual_pause",outcome="queued"\} 1/);
      expect(text).toMatch(/hiatus_builds_total\{transition="stop",reason="task_manual_pause",outcome="succeeded"\} 1/);
      expect(text).toMatch(/hiatus_builds_total\{transition="start",reason="task_resume",outcome="queued"\} 1/);
      expect(text).toMatch(/hiatus_pause_duration_seconds_count\{reason="task_manual_pause",outcome="succeeded"\} 1/);
      expect(text).toMatch(/hiatus_resume_duration_seconds_count\{outcome="succeeded"\} 1/);
      expect(text).toMatch(/hiatus_snapshot_bytes_count 1/);
      expect(text).toMatch(/hiatus_tasks\{status="pending"\} 1/);
      expect(text).toMatch(/hiatus_process_cpu_seconds_total/);
    } finally {
      metrics.stop();
    }
  });
});
