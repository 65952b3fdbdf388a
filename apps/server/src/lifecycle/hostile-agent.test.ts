import { afterEach, describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { messageJson, messagesJson, nestedJson, RawAgent } from '../../test/raw-agent.ts';
import { AgentError } from '../agentapi/client.ts';
import type { App } from '../app.ts';
import { defaults } from '../defaults.ts';
import { autoPausePass } from './auto-pause.ts';
import { meteredPause, meteredResume } from './metered.ts';
import { getSnapshot, pushSnapshot } from './snapshots.ts';
import { getTask } from './tasks.ts';

const manual = { reason: 'task_manual_pause' } as const;

/** Answers past each bound on what an agent may send, each of which once broke the snapshot's write. */
const hostileAnswers = {
  // Deeper than JSON.stringify can go (about 4,000 levels on Node's default stack).
  'an extra field nested 5,000 levels deep': messagesJson([messageJson(0, `"x":${nestedJson(5_000)}`)]),
  // Shallow enough to store, too deep for superjson to send back (about 1,400 levels).
  'an extra field nested 2,000 levels deep': messagesJson([messageJson(0, `"x":${nestedJson(2_000)}`)]),
  'an extra field one level past the limit': messagesJson([
    messageJson(0, `"x":${nestedJson(defaults.maxAgentMessageDepth)}`),
  ]),
  'a message id of 2^31': messagesJson([messageJson(2 ** 31)]),
  'ids running past 2^31 - 1': messagesJson([messageJson(2 ** 31 - 1), messageJson(2 ** 31)]),
  'NUL in an extra field': messagesJson([messageJson(0, '"x":{"y":["a\\u0000b"]}')]),
  'a lone surrogate in an extra field’s name': messagesJson([messageJson(0, '"x":{"\\ud800":1}')]),
  'too many extra fields': messagesJson([
    messageJson(0, Array.from({ length: defaults.maxAgentMessageExtraFields + 1 }, (_, i) => `"f${i}":${i}`).join(',')),
  ]),
  'extra fields over their size limit': messagesJson([
    messageJson(0, `"x":${JSON.stringify('y'.repeat(defaults.maxAgentMessageExtraBytes))}`),
  ]),
  'a long array in an extra field': messagesJson([
    messageJson(0, `"x":[${Array.from({ length: defaults.maxAgentMessageExtraBytes }, () => '0').join(',')}]`),
  ]),
};

describe.each(testBackends())('a hostile agent on %s', (backend) => {
  const h = useHarness(backend, { defaultIdleTimeoutSeconds: 3600 }, { say: 3 });
  const agents: RawAgent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  });
  const rawAgent = async (body: Buffer | string) => {
    const agent = await new RawAgent(body).start();
    agents.push(agent);
    return agent;
  };
  /** An active task whose agent answered well at its first pause and now answers `body`. */
  const taskTurnedHostile = async (body: Buffer | string) => {
    const task = await h.task({ status: 'paused' });
    const hostile = await rawAgent(body);
    await h.db.updateTable('tasks').set({ agent_url: hostile.url }).where('id', '=', task.id).execute();
    await meteredResume(h.app, h.alice, task.id);
    await h.settle();
    return task;
  };

  describe.each(Object.entries(hostileAnswers))('answering %s', (_what, body) => {
    it('fails a manual pause as a bad answer, changing nothing and counting the failure', async () => {
      const task = await taskTurnedHostile(body);
      const before = await h.state();
      const attempt = meteredPause(h.app, h.alice, task.id, manual);
      await expect(attempt).rejects.toMatchObject({
        code: 'agent_bad_response',
        message: expect.stringContaining('AgentAPI'),
      });
      expect(await h.state()).toEqual(before);
      const failures = await h.db
        .selectFrom('task_pause_failures')
        .where('task_id', '=', task.id)
        .selectAll()
        .execute();
      expect(failures).toMatchObject([{ cause: 'garbage', reason: 'task_manual_pause' }]);
    });

    it('still pauses without a fresh snapshot, keeping the old one readable', async () => {
      const task = await taskTurnedHostile(body);
      const old = await getSnapshot(h.app, h.alice, task.id);
      const forced = await meteredPause(h.app, h.alice, task.id, { ...manual, withoutSnapshot: true });
      expect(forced.task.status).toBe('pausing');
      expect(forced.snapshot).toMatchObject({ taken: false, reason: expect.stringContaining('no fresh snapshot') });
      expect(await getSnapshot(h.app, h.alice, task.id)).toEqual(old);
    });
  });

  it('keeps extra fields within the limits, at the deepest nesting allowed', async () => {
    const extra = `"x":${nestedJson(defaults.maxAgentMessageDepth - 1)},"tool":{"name":"grep","args":["-r","x"]}`;
    const task = await taskTurnedHostile(messagesJson([messageJson(0, extra), messageJson(1)]));
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 2 });
    const [first] = (await getSnapshot(h.app, h.alice, task.id)).messages;
    expect(first).toMatchObject({ id: 0, tool: { name: 'grep', args: ['-r', 'x'] } });
    expect(JSON.stringify(first?.x)).toBe(nestedJson(defaults.maxAgentMessageDepth - 1));
  });

  it('pauses the idle others in a pass where one agent is hostile, and the pass does not throw', async () => {
    const calm = await Promise.all([1, 2, 3].map(() => h.task({ idleTimeoutSeconds: 60 })));
    const deep = await taskTurnedHostile(hostileAnswers['an extra field nested 5,000 levels deep']);
    const huge = await taskTurnedHostile(hostileAnswers['a message id of 2^31']);
    await h.db.updateTable('tasks').set({ idle_timeout_seconds: 60 }).where('id', 'in', [deep.id, huge.id]).execute();
    for (const task of [...calm, deep, huge]) await h.idleFor(task.id, 61);

    const pass = await autoPausePass(h.app, { concurrency: 1 });
    for (const task of [...calm, deep, huge]) expect(pass.paused).toContain(task.id);
    expect(pass.failed).toEqual([]);
    // A bad answer is an idle agent's: its task is paused keeping the snapshot it had.
    expect((await getTask(h.app, h.alice, deep.id)).status).toBe('pausing');
    expect((await getSnapshot(h.app, h.alice, deep.id)).messageCount).toBe(3);
  });

  it('goes on past a task whose check fails for any reason, and names it', async () => {
    const tasks = await Promise.all([1, 2, 3].map(() => h.task({ idleTimeoutSeconds: 60 })));
    for (const task of tasks) await h.idleFor(task.id, 61);
    const broken = tasks[1]!;
    // An agent client that fails in a way nobody foresaw: not an AgentError.
    const app: App = {
      ...h.app,
      agent: (url, trust) => {
        const client = h.app.agent(url, trust);
        if (url !== broken.agentUrl) return client;
        client.status = () => Promise.reject(new TypeError('something nobody foresaw'));
        return client;
      },
    };
    // The broken task shares its agent with the others: fail only its own check.
    await h.db
      .updateTable('tasks')
      .set({ agent_url: `${h.agent.url}/broken` })
      .where('id', '=', broken.id)
      .execute();
    broken.agentUrl = `${h.agent.url}/broken`;

    const pass = await autoPausePass(app, { concurrency: 1 });
    expect(pass.failed).toEqual([{ taskId: broken.id, error: 'something nobody foresaw' }]);
    expect(pass.paused).toEqual(expect.arrayContaining([tasks[0]!.id, tasks[2]!.id]));
    expect(pass.paused).not.toContain(broken.id);
  });

  it('replaces invalid UTF-8 in an answer with U+FFFD, as AgentAPI’s own JSON encoder would', async () => {
    const body = Buffer.concat([
      Buffer.from('{"messages":[{"id":0,"role":"agent","content":"caf'),
      Buffer.from([0xc3, 0x20, 0xff, 0xfe]), // a cut two-byte sequence, then bytes UTF-8 never uses
      Buffer.from(` ok","time":"2026-06-03T13:00:00Z","extra":"\xe2\x82"}]}`, 'latin1'),
    ]);
    const task = await taskTurnedHostile(body);
    const paused = await meteredPause(h.app, h.alice, task.id, manual);
    expect(paused.snapshot.taken).toBe(true);
    const [message] = (await getSnapshot(h.app, h.alice, task.id)).messages;
    expect(message?.content).toBe('caf\ufffd \ufffd\ufffd ok');
    expect(message?.extra).toBe('\ufffd');
  });

  it('refuses nesting far past any stack, in the client, without overflowing its own', async () => {
    const agent = await rawAgent(messagesJson([messageJson(0, `"x":${nestedJson(1_000_000)}`)]));
    const attempt = h
      .otherApp({ maxSnapshotBytes: 64 * 1024 * 1024 })
      .agent(agent.url)
      .messages();
    await expect(attempt).rejects.toBeInstanceOf(AgentError);
    await expect(attempt).rejects.toMatchObject({ failure: 'bad_response' });
  });

  it('refuses a push past the same bounds as a bad input, storing nothing', async () => {
    const task = await h.task();
    const before = await h.state();
    for (const body of Object.values(hostileAnswers)) {
      const { messages } = JSON.parse(body) as { messages: Parameters<typeof pushSnapshot>[2]['messages'] };
      await expect(pushSnapshot(h.app, task.id, { messages })).rejects.toMatchObject({ code: 'bad_input' });
    }
    // Values superjson can revive over HTTP are not JSON, so they are no more storable.
    const time = new Date().toISOString();
    for (const odd of [10n, new Date(), new Map(), Number.NaN, () => 1]) {
      const messages = [{ id: 0, role: 'agent' as const, content: 'x', time, odd }];
      await expect(pushSnapshot(h.app, task.id, { messages })).rejects.toMatchObject({ code: 'bad_input' });
    }
    expect(await h.state()).toEqual(before);
  });

  it('refuses a push over the snapshot size limit, storing nothing', async () => {
    const small = h.otherApp({ maxSnapshotBytes: 64 * 1024 });
    const task = await h.task();
    const before = await h.state();
    const time = new Date().toISOString();
    const messages = Array.from({ length: 10 }, (_, id) => ({
      id,
      role: 'agent' as const,
      content: 'x'.repeat(8 * 1024),
      time,
    }));
    await expect(pushSnapshot(small, task.id, { messages })).rejects.toMatchObject({
      code: 'too_large',
      message: expect.stringContaining(String(64 * 1024)),
    });
    expect(await h.state()).toEqual(before);
    expect(await pushSnapshot(small, task.id, { messages: messages.slice(0, 5) })).toMatchObject({ stored: true });
  });
});
