import { type Kysely, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { down, up } from '../../../../migrations/0015_task_history.ts';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { type Harness, useHarness } from '../../test/harness.ts';
import type { AgentMessage } from '../agentapi/schema.ts';
import { listEvents } from '../db/events.ts';
import { purgeDeletedTasks } from '../db/tasks.ts';
import { insertWebhook } from '../db/webhooks.ts';
import { readTaskHistory } from './history.ts';
import { type LogPage, readLogs } from './logs.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { getSnapshot, listHistorySegments, pushSnapshot } from './snapshots.ts';
import { deleteTask, updateTask } from './tasks.ts';

/** What a harness's tests share: pausing, resuming onto an agent, reading a whole log. */
function historySteps(h: Harness) {
  const agents: FakeAgent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  });
  return {
    /** A fresh agent holding `count` messages, whose contents name it (padded to `size` characters). */
    async agent(name: string, count: number, size = 0): Promise<FakeAgent> {
      const agent = await new FakeAgent().start();
      agents.push(agent);
      agent.say(count);
      for (const message of agent.messages) message.content = `${name} ${message.id}`.padEnd(size, '.');
      return agent;
    },
    async pause(taskId: string): Promise<void> {
      await meteredPause(h.app, h.alice, taskId, { reason: 'task_manual_pause' });
      await h.settle();
    },
    /** Resumes the task, on `agent` when given (a new agent), else on the same one (which keeps its history). */
    async resume(taskId: string, agent?: FakeAgent): Promise<void> {
      if (agent) await updateTask(h.app, h.alice, taskId, { agentUrl: agent.url });
      await meteredResume(h.app, h.alice, taskId);
      await h.settle();
    },
    async readAll(taskId: string, limit: number): Promise<LogPage[]> {
      const pages: LogPage[] = [];
      let cursor: number | undefined;
      do {
        const page = await readLogs(h.app, h.alice, taskId, { cursor, limit });
        pages.push(page);
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined && pages.length < 200);
      return pages;
    },
  };
}

/** The entries a history of these agents' conversations shows, in order, segment by segment. */
function expected(...lifetimes: AgentMessage[][]) {
  let position = 0;
  return lifetimes.flatMap((messages, i) =>
    messages.map((m) => ({ id: m.id, position: position++, segment: i + 1, content: m.content })),
  );
}

const shape = (pages: LogPage[]) =>
  pages.flatMap((p) => p.entries).map(({ id, position, segment, content }) => ({ id, position, segment, content }));

describe.each(testBackends())('a task history across agent lifetimes on %s', (backend) => {
  const h = useHarness(backend);
  const steps = historySteps(h);

  it('keeps every earlier agent as a segment, and pages across the boundaries by position', async () => {
    const first = await steps.agent('first', 4);
    const task = await h.task({ agent: first });
    await steps.pause(task.id);
    const lifetimes = [first.messages];
    for (const [i, name] of ['second', 'third', 'fourth', 'fifth'].entries()) {
      const agent = await steps.agent(name, 3 + (i % 2));
      await steps.resume(task.id, agent);
      await steps.pause(task.id);
      lifetimes.push(agent.messages);
      await agent.stop(); // the workspace is down: the log must not need it
    }
    await first.stop();

    // Pages of 3 across segments of 3 and 4: every boundary falls inside some page.
    const pages = await steps.readAll(task.id, 3);
    expect(shape(pages)).toEqual(expected(...lifetimes));
    expect(pages.every((p) => p.source === 'snapshot')).toBe(true);
    expect(pages.at(-1)?.nextCursor).toBeNull();
    // Each page names the segments its entries belong to; one boundary: paused, then a new agent.
    const crossing = pages.find((p) => p.segments.length === 2)!;
    const [before, after] = crossing.segments;
    expect(before!.pausedAt!.getTime()).toBeLessThanOrEqual(after!.startedAt!.getTime());
    expect(before!.source).toBe('kept');
    expect(pages.at(-1)?.segments.at(-1)).toMatchObject({ segment: 5, source: 'snapshot', repeated: 0 });

    // The latest snapshot is still the seed's one row: the fifth agent's conversation alone.
    expect((await getSnapshot(h.app, h.alice, task.id)).messages).toEqual(lifetimes[4]);
    const { segments } = await listHistorySegments(h.app, h.alice, task.id);
    expect(segments.map((s) => [s.segment, s.source, s.firstPosition, s.messageCount])).toEqual([
      [1, 'kept', 0, 4],
      [2, 'kept', 4, 3],
      [3, 'kept', 7, 4],
      [4, 'kept', 11, 3],
      [5, 'snapshot', 14, 4],
    ]);

    // A cursor in the middle of a segment, and on its last entry.
    const mid = await readLogs(h.app, h.alice, task.id, { cursor: 8, limit: 4 });
    expect(shape([mid]).map((e) => e.position)).toEqual([9, 10, 11, 12]);
    expect(mid.segments.map((s) => s.segment)).toEqual([3, 4]);
    const edge = await readLogs(h.app, h.alice, task.id, { cursor: 10, limit: 1 });
    expect(shape([edge])).toEqual([{ id: 0, position: 11, segment: 4, content: 'fourth 0' }]);

    // Resumed once more: the live agent comes last, after every stored segment.
    const live = await steps.agent('sixth', 2);
    await steps.resume(task.id, live);
    const active = await steps.readAll(task.id, 5);
    expect(shape(active)).toEqual(expected(...lifetimes, live.messages));
    expect(active.at(-1)).toMatchObject({ source: 'live', nextCursor: null });
    expect(active.at(-1)?.segments.at(-1)).toMatchObject({ segment: 6, source: 'live', pausedAt: null });

    // The whole history as one conversation for a resumed agent: renumbered, oldest first.
    const history = await readTaskHistory(h.app, task.id);
    expect(history.messages.map((m) => [m.id, m.content])).toEqual(lifetimes.flat().map((m, i) => [i, m.content]));
    expect(history.truncated).toBe(false);
    const lastFive = lifetimes.flat().slice(-5);
    const newest = await readTaskHistory(h.app, task.id, {
      maxBytes: lastFive.reduce((sum, m) => sum + Buffer.byteLength(JSON.stringify(m)), 0),
    });
    expect(newest.truncated).toBe(true);
    expect(newest.messages.map((m) => m.content)).toEqual(['fourth 2', 'fifth 0', 'fifth 1', 'fifth 2', 'fifth 3']);
  });

  it('replaces, not adds, the segment of the same agent (a push, a second snapshot before the pause)', async () => {
    h.agent.say(6);
    const task = await h.task();
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(0, 2) });
    await pushSnapshot(h.app, task.id, { messages: h.agent.messages.slice(0, 4) });
    await steps.pause(task.id);
    const { segments } = await listHistorySegments(h.app, h.alice, task.id);
    expect(segments.map((s) => [s.segment, s.source, s.messageCount])).toEqual([[1, 'snapshot', 6]]);
    expect(shape(await steps.readAll(task.id, 4))).toEqual(expected(h.agent.messages));
  });

  it('shows once what an agent that keeps its own history repeats, and keeps whole what it does not', async () => {
    h.agent.say(4);
    const task = await h.task();
    await steps.pause(task.id);
    // The same agent after the resume, its conversation kept: it goes on from where it was.
    await steps.resume(task.id);
    h.agent.say(2);
    const live = await steps.readAll(task.id, 3);
    const once = expected(h.agent.messages.slice(0, 4), h.agent.messages.slice(4));
    expect(shape(live)).toEqual(once);
    expect(live.at(-1)?.segments.at(-1)).toMatchObject({ segment: 2, source: 'live', repeated: 4 });

    await steps.pause(task.id);
    expect(shape(await steps.readAll(task.id, 3))).toEqual(once);
    const { segments } = await listHistorySegments(h.app, h.alice, task.id);
    expect(segments.map((s) => [s.segment, s.messageCount, s.repeated])).toEqual([
      [1, 4, 0],
      [2, 2, 4],
    ]);
    // snapshots.get still answers the agent's whole conversation, as it gave it.
    expect((await getSnapshot(h.app, h.alice, task.id)).messages).toEqual(h.agent.messages);

    // A third agent that changed one earlier message repeats nothing exactly: all of it is kept.
    await steps.resume(task.id);
    h.agent.messages[1]!.content = 'edited';
    h.agent.say(1);
    await steps.pause(task.id);
    const pages = await steps.readAll(task.id, 50);
    expect(shape(pages)).toEqual(
      expected(h.agent.messages.slice(0, 4), h.agent.messages.slice(4, 6), h.agent.messages).map((e) =>
        e.position === 1 ? { ...e, content: 'message 1 '.padEnd(40, 'x') } : e,
      ),
    );
  });

  it('shows once the whole history an agent was handed and replays', async () => {
    const a = await steps.agent('a', 2);
    const task = await h.task({ agent: a });
    await steps.pause(task.id);
    const b = await steps.agent('b', 3);
    await steps.resume(task.id, b);
    await steps.pause(task.id);
    // The third agent is handed the task's history and restores it as its own conversation.
    const handed = await readTaskHistory(h.app, task.id);
    const c = await steps.agent('c', 0);
    c.messages = handed.messages.map((m) => ({ ...m }));
    c.say(2);
    c.messages[5]!.content = 'c 5';
    c.messages[6]!.content = 'c 6';
    await steps.resume(task.id, c);
    const once = expected(a.messages, b.messages, c.messages.slice(5));
    const live = await steps.readAll(task.id, 3);
    expect(shape(live)).toEqual(once);
    expect(live.at(-1)?.segments.at(-1)).toMatchObject({ segment: 3, source: 'live', repeated: 5 });
    await steps.pause(task.id);
    expect(shape(await steps.readAll(task.id, 3))).toEqual(once);
    // And a fourth handed all of it again: still once.
    const d = await steps.agent('d', 0);
    d.messages = (await readTaskHistory(h.app, task.id)).messages.map((m) => ({ ...m }));
    d.say(1);
    d.messages[7]!.content = 'd 7';
    await steps.resume(task.id, d);
    await steps.pause(task.id);
    expect(shape(await steps.readAll(task.id, 4))).toEqual(
      expected(a.messages, b.messages, c.messages.slice(5), d.messages.slice(7)),
    );
  });

  it('numbers positions past the largest message id an agent may give', async () => {
    const first = await steps.agent('high', 1);
    first.messages[0]!.id = 2 ** 31 - 1;
    const task = await h.task({ agent: first });
    await steps.pause(task.id);
    await steps.resume(task.id, await steps.agent('next', 2));
    await steps.pause(task.id);
    const entries = shape(await steps.readAll(task.id, 2));
    expect(entries.map((e) => [e.position, e.segment])).toEqual([
      [2 ** 31 - 1, 1],
      [2 ** 31, 2],
      [2 ** 31 + 1, 2],
    ]);
  });

  it('removes the whole history with the task: at delete, and by the cascade at purge', async () => {
    const counts = async (taskId: string) => ({
      segments: (await h.db.selectFrom('task_history_segments').where('task_id', '=', taskId).selectAll().execute())
        .length,
      pages: (await h.db.selectFrom('task_history_pages').where('task_id', '=', taskId).selectAll().execute()).length,
    });
    const lived = async () => {
      const task = await h.task({ agent: await steps.agent('a', 2) });
      await steps.pause(task.id);
      await steps.resume(task.id, await steps.agent('b', 2));
      await steps.pause(task.id);
      await steps.resume(task.id, await steps.agent('c', 2));
      await steps.pause(task.id);
      expect(await counts(task.id)).toEqual({ segments: 2, pages: 2 });
      return task;
    };

    const deleted = await lived();
    const { build } = await deleteTask(h.app, h.alice, deleted.id);
    expect(await counts(deleted.id)).toEqual({ segments: 0, pages: 0 });
    const record = await h.db
      .selectFrom('audit_logs')
      .where('resource_id', '=', deleted.id)
      .where('action', '=', 'task.delete')
      .select('diff')
      .executeTakeFirstOrThrow();
    expect(record.diff).toMatchObject({ snapshotDeleted: true, historySegmentsDeleted: 2 });
    expect(build.transition).toBe('delete');

    // A task gone from the table takes its history with it (ON DELETE CASCADE).
    const purged = await lived();
    // Deleted a minute ago by the database's own clock (created before, as a check requires): PGlite's NOW() ticks
    // in milliseconds, so a deleted_at of new Date() can equal the purge's NOW() and not be older than it.
    await h.db
      .updateTable('tasks')
      .set({ created_at: sql`NOW() - interval '2 minutes'`, deleted_at: sql`NOW() - interval '1 minute'` })
      .where('id', '=', purged.id)
      .execute();
    expect(await purgeDeletedTasks(h.db, 0)).toContain(purged.id);
    expect(await counts(purged.id)).toEqual({ segments: 0, pages: 0 });
  });

  it('places snapshots taken before the history existed when migrating, and keeps them at the next agent', async () => {
    const old = await steps.agent('old', 3);
    const task = await h.task({ agent: old });
    await steps.pause(task.id);
    // The migration as it ran on a database that held snapshots already (this file's last test).
    const untyped = h.db as unknown as Kysely<unknown>;
    await down(untyped);
    await up(untyped);
    const placed = await h.db
      .selectFrom('task_snapshot_segments')
      .selectAll()
      .where('task_id', '=', task.id)
      .executeTakeFirstOrThrow();
    expect(placed).toMatchObject({ segment: 1, overlap: 0, conversation_hash: null, agent_url: null });
    const start = await h.db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', task.workspaceId)
      .where('transition', '=', 'start')
      .select('id')
      .executeTakeFirstOrThrow();
    expect(placed.start_build_id).toBe(start.id);

    const next = await steps.agent('new', 2);
    await steps.resume(task.id, next);
    await steps.pause(task.id);
    expect(shape(await steps.readAll(task.id, 2))).toEqual(expected(old.messages, next.messages));
  });
});

// A page's cost and a pause's, counted in statements and rows the database answers, must not grow
// with the number of kept segments: the same at 1, 10 and 100.
describe.each(testBackends())('the cost of a long history on %s', (backend) => {
  const h = useHarness(backend);

  it('is the same for a log page and a pause with 1, 10 and 100 kept segments', async () => {
    const counts = { statements: 0, rows: 0 };
    const counted = h.db.withPlugin({
      transformQuery: ({ node }) => {
        counts.statements++;
        return node;
      },
      transformResult: async ({ result }) => {
        counts.rows += result.rows.length;
        return result;
      },
    });
    const app = { ...h.app, db: counted, reads: () => counted };
    const measure = async (work: () => Promise<unknown>) => {
      counts.statements = 0;
      counts.rows = 0;
      await work();
      return { ...counts };
    };
    /** The agent starts afresh with four messages of its own: each lifetime a segment of 4. */
    const freshConversation = (n: number) => {
      h.agent.messages = [];
      h.agent.say(4);
      for (const m of h.agent.messages) m.content = `lifetime ${n} message ${m.id}`;
    };

    freshConversation(0);
    const task = await h.task();
    const pauses: Array<{ statements: number; rows: number }> = [];
    const pages: Array<{ statements: number; rows: number }> = [];
    for (let n = 1; n <= 101; n++) {
      const kept = n - 1;
      const pause = () => meteredPause(app, h.alice, task.id, { reason: 'task_manual_pause' });
      if ([1, 10, 100].includes(kept)) pauses.push(await measure(pause));
      else await pause();
      await h.settle();
      if ([1, 10, 100].includes(kept)) {
        // A page of 5 across the last kept segment and the latest snapshot: the same shape each time.
        const cursor = 4 * kept - 3;
        const page = await measure(() => readLogs(app, h.alice, task.id, { cursor, limit: 5 }));
        pages.push(page);
        const read = await readLogs(app, h.alice, task.id, { cursor, limit: 5 });
        expect(read.entries.map((e) => e.position)).toEqual([1, 2, 3, 4, 5].map((i) => cursor + i));
      }
      if (n === 101) break;
      freshConversation(n);
      await meteredResume(h.app, h.alice, task.id);
      await h.settle();
    }
    expect(pages[1]).toEqual(pages[0]);
    expect(pages[2]).toEqual(pages[0]);
    expect(pauses[1]).toEqual(pauses[0]);
    expect(pauses[2]).toEqual(pauses[0]);
    expect((await listHistorySegments(h.app, h.alice, task.id)).segments).toHaveLength(101);
  }, 240_000);
});

describe.each(testBackends())('the bound of a task history on %s', (backend) => {
  // Four messages of some 470 bytes each make a segment of about 1,900 bytes: three fit, not four.
  const h = useHarness(backend, { maxHistoryBytes: 6_000 });
  const steps = historySteps(h);

  it('drops the oldest segments first, each with an event, and keeps the positions of the rest', async () => {
    // An endpoint that wants the drops: each event gets its delivery in the drop's transaction.
    const hook = await insertWebhook(h.db, {
      ownerId: h.alice.userId,
      allTasks: false,
      url: 'http://127.0.0.1:9/history',
      eventTypes: ['task.history_dropped'],
      secret: 'a-secret-nobody-checks-here',
      description: 'history drops',
    });
    const first = await steps.agent('one', 4, 400);
    const task = await h.task({ agent: first });
    await steps.pause(task.id);
    const lifetimes = [first.messages];
    for (const name of ['two', 'three', 'four', 'five', 'six']) {
      const agent = await steps.agent(name, 4, 400);
      await steps.resume(task.id, agent);
      await steps.pause(task.id);
      lifetimes.push(agent.messages);
    }

    const events = (await listEvents(h.db, { taskId: task.id, types: ['task.history_dropped'], limit: 100 })).map(
      (e) => e.payload,
    );
    expect(events.map((e) => (e as { segment: number }).segment)).toEqual([1, 2, 3]);
    expect(events[0]).toMatchObject({ messageCount: 4, maxHistoryBytes: 6_000, bytes: expect.any(Number) });
    const deliveries = await h.db
      .selectFrom('webhook_deliveries')
      .where('webhook_id', '=', hook.id)
      .select('task_id')
      .execute();
    expect(deliveries).toEqual([{ task_id: task.id }, { task_id: task.id }, { task_id: task.id }]);

    const { segments } = await listHistorySegments(h.app, h.alice, task.id);
    expect(segments.map((s) => s.segment)).toEqual([4, 5, 6]);
    expect(segments.reduce((sum, s) => sum + s.bytes, 0)).toBeLessThanOrEqual(6_000);
    // What is left keeps its positions: the log starts where segment 4 always started.
    const all = expected(...lifetimes);
    const pages = await steps.readAll(task.id, 5);
    expect(shape(pages)).toEqual(all.filter((e) => e.segment >= 4));
    expect(shape(pages)[0]?.position).toBe(12);
    // A cursor into what was dropped reads on from the oldest entry kept.
    const stale = await readLogs(h.app, h.alice, task.id, { cursor: 2, limit: 2 });
    expect(shape([stale]).map((e) => e.position)).toEqual([12, 13]);
    expect((await readTaskHistory(h.app, task.id)).truncated).toBe(true);
  });
});
