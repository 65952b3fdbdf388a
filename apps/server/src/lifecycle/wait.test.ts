import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { afterWaitIfAsked, waitForBuild } from './wait.ts';

describe.each(testBackends())('waiting for a pause or resume on %s', (backend) => {
  const h = useHarness(backend);
  const manual = { reason: 'task_manual_pause' } as const;

  it('answers a pause with the task paused once its stop build ended', async () => {
    const task = await h.task();
    const stop = h.provisioner(50);
    try {
      const paused = await meteredPause(h.app, h.alice, task.id, manual);
      const waited = await afterWaitIfAsked(h.app, h.alice, paused, { wait: true, waitMs: 10_000 });
      expect(waited).toMatchObject({
        settled: true,
        task: { status: 'paused' },
        build: { id: paused.build.id, transition: 'stop', jobStatus: 'succeeded' },
        snapshot: { taken: true },
      });
    } finally {
      await stop();
    }
  });

  it('answers a resume with the task active once its start build ended', async () => {
    const task = await h.task({ status: 'paused' });
    const stop = h.provisioner(50);
    try {
      const resumed = await meteredResume(h.app, h.alice, task.id);
      const waited = await afterWaitIfAsked(h.app, h.alice, resumed, { wait: true, waitMs: 10_000 });
      expect(waited).toMatchObject({ settled: true, task: { status: 'active' }, build: { jobStatus: 'succeeded' } });
    } finally {
      await stop();
    }
  });

  it('is woken by the build, not by its fallback look', async () => {
    const task = await h.task();
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    const started = Date.now();
    const waiting = waitForBuild(h.app, h.alice, paused, 10_000, { pollMs: 10_000 });
    setTimeout(() => void h.settle(), 100);
    expect(await waiting).toMatchObject({ settled: true, task: { status: 'paused' } });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('answers the task in error when the build failed', async () => {
    const task = await h.task({ status: 'paused' });
    const resumed = await meteredResume(h.app, h.alice, task.id);
    setTimeout(() => void h.settle({ error: 'no room' }), 50);
    const waited = await waitForBuild(h.app, h.alice, resumed, 10_000);
    expect(waited).toMatchObject({ settled: true, task: { status: 'error' }, build: { jobStatus: 'failed' } });
  });

  it('without a provisioner, gives up at waitMs and answers the task as it is', async () => {
    const task = await h.task();
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    const started = Date.now();
    const waited = await afterWaitIfAsked(h.app, h.alice, paused, { wait: true, waitMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(waited).toMatchObject({ settled: false, task: { status: 'pausing' }, build: { jobStatus: 'pending' } });
    await h.settle();
  });

  it('does not wait unless asked', async () => {
    const task = await h.task();
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    const answer = await afterWaitIfAsked(h.app, h.alice, paused, { waitMs: 10_000 });
    expect(answer).toBe(paused);
    expect(answer.task.status).toBe('pausing');
    await h.settle();
  });
});
