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
      // The wait ends when the build does: its limit only guards against a hang.
      const waited = await afterWaitIfAsked(h.app, h.alice, paused, { wait: true, waitMs: 60_000 });
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
      const waited = await afterWaitIfAsked(h.app, h.alice, resumed, { wait: true, waitMs: 60_000 });
      expect(waited).toMatchObject({ settled: true, task: { status: 'active' }, build: { jobStatus: 'succeeded' } });
    } finally {
      await stop();
    }
  });

  it('is woken by the build, not by its fallback look', async () => {
    const task = await h.task();
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    // The wait's own database, telling when its first look has read the task (the build still pending).
    let looked: () => void = () => undefined;
    const firstLook = new Promise<void>((resolve) => {
      looked = resolve;
    });
    const db = h.db.withPlugin({
      transformQuery: ({ node }) => node,
      transformResult: async ({ result }) => {
        looked();
        return result;
      },
    });
    // Its limit and fallback look an hour away: only the build can end it within the test.
    const hour = 3_600_000;
    const waiting = waitForBuild({ db, events: h.app.events }, h.alice, paused, hour, { pollMs: hour });
    await firstLook;
    await h.settle();
    expect(await waiting).toMatchObject({ settled: true, task: { status: 'paused' } });
  });

  it('answers the task in error when the build failed', async () => {
    const task = await h.task({ status: 'paused' });
    const resumed = await meteredResume(h.app, h.alice, task.id);
    const waiting = waitForBuild(h.app, h.alice, resumed, 60_000);
    await h.settle({ error: 'no room' });
    const waited = await waiting;
    expect(waited).toMatchObject({ settled: true, task: { status: 'error' }, build: { jobStatus: 'failed' } });
  });

  it('without a provisioner, gives up at waitMs and answers the task as it is', async () => {
    const task = await h.task();
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    const started = Date.now();
    const waited = await afterWaitIfAsked(h.app, h.alice, paused, { wait: true, waitMs: 300 });
    // Not before its limit (a lower bound only: a slow machine makes it later, never earlier).
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
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
