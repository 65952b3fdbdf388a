import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { getTask } from '../lifecycle/access.ts';
import { meteredPause, meteredResume } from '../lifecycle/metered.ts';
import { lifecycleTelemetry } from './lifecycle.ts';
import { createMetrics } from './metrics.ts';

describe.each(testBackends())('telemetry on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });
  beforeAll(() => {
    h.agent.say(10, 100);
  });

  it('tells the three task reasons apart from ordinary builds, with pause-time, idle and size figures', async () => {
    // A seeded history: two tasks; one paused by hand, resumed, auto-paused; one paused and left.
    const first = await h.task();
    const second = await h.task();
    await meteredPause(h.app, h.alice, first.id, { reason: 'task_manual_pause' });
    await meteredPause(h.app, h.alice, second.id, { reason: 'task_manual_pause' });
    await h.settle();
    await meteredResume(h.app, h.alice, first.id);
    await h.settle();
    // The stop finished 90 seconds before the resume (dated from the resume itself, not the clock now).
    await sql`
      UPDATE workspace_builds s
      SET completed_at = r.created_at - interval '90 seconds', started_at = r.created_at - interval '91 seconds',
          created_at = r.created_at - interval '92 seconds'
      FROM workspace_builds r
      WHERE s.workspace_id = ${first.workspaceId} AND s.transition = 'stop'
        AND r.workspace_id = s.workspace_id AND r.reason = 'task_resume'`.execute(h.db);
    await h.db
      .updateTable('tasks')
      .set({ agent_last_running_at: sql`NOW() - interval '600 seconds'` })
      .where('id', '=', first.id)
      .execute();
    await meteredPause(h.app, { kind: 'system' }, first.id, { reason: 'task_auto_pause' });
    h.agent.mode = 'error500';
    await expect(meteredPause(h.app, h.alice, second.id, { reason: 'task_manual_pause' })).rejects.toMatchObject({
      code: 'conflict',
    });
    h.agent.mode = 'ok';

    const now = Date.now();
    const buckets = await lifecycleTelemetry(h.app, {
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
    expect(all.pausedSeconds.p50).toBe(90);
    expect(all.idleBeforeAutoPauseSeconds.count).toBe(1);
    expect(all.idleBeforeAutoPauseSeconds.p50).toBeGreaterThanOrEqual(599);
    expect(all.snapshotBytes.count).toBe(3);
    expect(all.snapshotBytes.max).toBeGreaterThan(1000);
    expect(all.snapshotMessages.p50).toBe(10);
    expect(all.pauseFailures).toEqual({ conflict: 1 });
  });

  it('exposes build counters, pause and resume latency and tasks by status as Prometheus metrics', async () => {
    const metrics = createMetrics(h.app);
    try {
      const task = await h.task();
      await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
      await h.settle();
      await meteredResume(h.app, h.alice, task.id);
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

  it('counts paused tasks by stage, as tasks.get says it: hot while the stop build holds the agent frozen', async () => {
    const metrics = createMetrics(h.app);
    try {
      const task = await h.task();
      await meteredPause(h.app, h.alice, task.id, { reason: 'task_manual_pause' });
      await h.settle();
      const stageOf = async () => (await getTask(h.app, h.alice, task.id)).pauseStage;
      const scrape = async () => {
        const text = await metrics.registry.metrics();
        return [/hiatus_paused_tasks\{stage="hot"\} (\d+)/, /hiatus_paused_tasks\{stage="cold"\} (\d+)/].map((r) =>
          Number(r.exec(text)?.[1]),
        );
      };
      // Earlier tests of this file left tasks paused: counts are taken against theirs.
      const [hot, cold] = await scrape();
      expect(await stageOf()).toBe('cold');
      // What a driver that froze the agent reports as the stop build's outputs (the docker driver's hot pause).
      const setOutputs = (outputs: object) =>
        h.db
          .updateTable('workspace_builds')
          .set({ outputs: JSON.stringify(outputs) })
          .where('workspace_id', '=', task.workspaceId)
          .where('transition', '=', 'stop')
          .execute();
      await setOutputs({ pauseStage: 'hot', coldAt: new Date(Date.now() + 3_600_000).toISOString() });
      expect(await stageOf()).toBe('hot');
      expect(await scrape()).toEqual([hot! + 1, cold! - 1]);
      await setOutputs({ pauseStage: 'hot', coldAt: new Date(Date.now() - 1_000).toISOString() });
      expect(await stageOf()).toBe('cold');
      expect(await scrape()).toEqual([hot, cold]);
      await meteredResume(h.app, h.alice, task.id);
      expect(await stageOf()).toBeNull();
    } finally {
      metrics.stop();
    }
  });
});
