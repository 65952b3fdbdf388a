import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { deliverInbox } from '../inbox/inbox.ts';
import { sendToTask } from '../inbox/send.ts';
import { readLogs } from './logs.ts';
import { pauseTask } from './pause.ts';
import { holdTaskForPause } from './pause-hold.ts';
import { getSnapshot } from './snapshots.ts';
import { getTask } from './tasks.ts';

describe.each(testBackends())('send and pause exclude each other on %s', (backend) => {
  const h = useHarness(backend);
  const manual = { reason: 'task_manual_pause' } as const;
  const inbox = (taskId: string) =>
    h.db
      .selectFrom('task_messages')
      .where('task_id', '=', taskId)
      .orderBy('position')
      .select(['content', 'status'])
      .execute();
  /** Waits until a pause holds the task (its hold is in the database). */
  const heldForPause = (taskId: string) =>
    vi.waitFor(
      async () => {
        const row = await h.db.selectFrom('tasks').where('id', '=', taskId).select('pause_hold_id').executeTakeFirst();
        expect(row?.pause_hold_id).not.toBeNull();
      },
      { timeout: 10_000, interval: 10 },
    );
  /** Holds the agent's answers to `POST /message` until the returned function is called. */
  const holdPosts = () => {
    let release!: () => void;
    h.agent.postGate = new Promise<void>((resolve) => {
      release = resolve;
    });
    return () => {
      h.agent.postGate = undefined;
      release();
    };
  };

  it('lets a delivery under way arrive before the pause fetches the history, so it is in the snapshot', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    await sendToTask(h.app, h.alice, task.id, 'in flight');
    h.agent.status = 'stable';
    const release = holdPosts();
    const delivering = deliverInbox(h.app, task.id);
    await vi.waitFor(() => expect(h.agent.postsArrived).toBe(1), { timeout: 10_000, interval: 10 });
    const reads = h.agent.historyReads;
    const pausing = pauseTask(h.app, h.alice, task.id, manual);
    // The pause holds the task and waits: its hold is in the database, and no history was asked for.
    await heldForPause(task.id);
    expect(h.agent.historyReads).toBe(reads);
    release();
    expect(await delivering).toBe(1);
    const paused = await pausing;
    expect(paused.snapshot).toMatchObject({ taken: true });
    expect((await getSnapshot(h.app, h.alice, task.id)).messages.map((m) => m.content)).toContain('in flight');
    expect(await inbox(task.id)).toEqual([{ content: 'in flight', status: 'delivered' }]);
    // The pause let go of its hold when it committed.
    const row = await h.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect([row.pause_hold_id, row.pause_hold_until]).toEqual([null, null]);
  });

  it('waits for a message sent straight to the agent, too', async () => {
    const task = await h.task();
    const release = holdPosts();
    const sending = sendToTask(h.app, h.alice, task.id, 'straight');
    await vi.waitFor(() => expect(h.agent.postsArrived).toBe(1), { timeout: 10_000, interval: 10 });
    const reads = h.agent.historyReads;
    const pausing = pauseTask(h.app, h.alice, task.id, manual);
    await heldForPause(task.id);
    expect(h.agent.historyReads).toBe(reads);
    release();
    expect(await sending).toMatchObject({ queued: false });
    await pausing;
    expect((await getSnapshot(h.app, h.alice, task.id)).messages.map((m) => m.content)).toContain('straight');
    expect(await inbox(task.id)).toEqual([{ content: 'straight', status: 'delivered' }]);
  });

  it('starts no delivery while a pause holds the task: the message stays queued, and shows as pending', async () => {
    const task = await h.task();
    const hold = await holdTaskForPause(h.app, task);
    try {
      // A send to the active task is queued, not posted; the inbox does not deliver it either.
      expect(await sendToTask(h.app, h.alice, task.id, 'while pausing')).toMatchObject({ queued: true });
      expect(await deliverInbox(h.app, task.id)).toBe(0);
      expect(h.agent.postsArrived).toBe(0);
      // A second pause is refused while the first holds the task, and changes nothing.
      await expect(pauseTask(h.app, h.alice, task.id, manual)).rejects.toMatchObject({
        code: 'conflict',
        message: expect.stringContaining('another pause'),
      });
      expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
    } finally {
      await hold.release();
    }
    // Once let go, the message goes.
    expect(await deliverInbox(h.app, task.id)).toBe(1);
    expect(h.agent.received).toEqual(['while pausing']);
  });

  it('keeps a message queued by a racing send through the pause, pending in the paused log', async () => {
    const task = await h.task();
    const hold = await holdTaskForPause(h.app, task);
    await sendToTask(h.app, h.alice, task.id, 'too late');
    await hold.release();
    // The pause proper takes its own hold: nothing is delivered between its fetch and its commit.
    await pauseTask(h.app, h.alice, task.id, manual);
    await h.settle();
    const logs = await readLogs(h.app, h.alice, task.id);
    expect(logs.pending.map((p) => p.content)).toEqual(['too late']);
    expect(h.agent.received).toEqual([]);
  });

  it('voids a hold whose pausing process died once it runs out, and refuses that pause if it comes back', async () => {
    const task = await h.task();
    h.agent.status = 'running';
    await sendToTask(h.app, h.alice, task.id, 'after the hold');
    h.agent.status = 'stable';
    const hold = await holdTaskForPause(h.app, task);
    expect(await deliverInbox(h.app, task.id)).toBe(0);
    // The hold's lease runs out (its process is gone): deliveries go on.
    await sql`UPDATE tasks SET pause_hold_until = NOW() - interval '1 second' WHERE id = ${task.id}`.execute(h.db);
    expect(await deliverInbox(h.app, task.id)).toBe(1);
    // The late pause cannot commit on a hold that is void: nothing changes.
    await expect(
      h.db.transaction().execute(async (trx) => {
        await hold.end(trx);
      }),
    ).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('outlasted its hold') });
    expect((await getTask(h.app, h.alice, task.id)).status).toBe('active');
  });

  it('lets a later pause here take over a hold whose failed pause could not clear it (the database was away)', async () => {
    const task = await h.task();
    const app = { ...h.app };
    const hold = await holdTaskForPause(app, task);
    // The database goes away as the pause fails: its hold cannot be cleared.
    app.db = new Proxy(h.db, {
      get: (target, property) =>
        property === 'updateTable'
          ? () => {
              throw new Error('Connection terminated');
            }
          : Reflect.get(target, property),
    });
    await expect(hold.release()).rejects.toThrow('Connection terminated');
    const held = await h.db.selectFrom('tasks').where('id', '=', task.id).select('pause_hold_id').executeTakeFirst();
    expect(held?.pause_hold_id).not.toBeNull();
    // Back: this process's next pause is not refused as if a pause were under way.
    const paused = await pauseTask(h.app, h.alice, task.id, manual);
    expect(paused.task.status).toBe('pausing');
    const row = await h.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect([row.pause_hold_id, row.pause_hold_until]).toEqual([null, null]);
  });

  it('lets go of the hold when the pause fails, so deliveries go on at once', async () => {
    const task = await h.task();
    h.agent.mode = 'error500';
    await expect(pauseTask(h.app, h.alice, task.id, manual)).rejects.toMatchObject({
      code: expect.stringMatching(/^agent_/),
    });
    const row = await h.db.selectFrom('tasks').where('id', '=', task.id).selectAll().executeTakeFirstOrThrow();
    expect([row.pause_hold_id, row.pause_hold_until]).toEqual([null, null]);
  });
});
