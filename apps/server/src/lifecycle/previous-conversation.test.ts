import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { HiatusError } from '../domain/errors.ts';
import { acquireBuildJob, completeBuildJob, jobPreviousConversation } from './jobs.ts';
import { meteredPause } from './metered.ts';
import { previousConversation } from './previous-conversation.ts';
import { resumeTask } from './resume.ts';

// What a provisioner learns of a start: its kind with the job, and a resume's previous conversation
// apart from it, for the job's holder alone.
describe.each(testBackends())('a resume job and its previous conversation on %s', (backend) => {
  const h = useHarness(backend);

  it('says a first start is one, and hands a resume job its holder the conversation before the pause', async () => {
    h.agent.say(4);
    const { id } = await h.task({ status: 'pending' });
    const first = await acquireBuildJob(h.app, 'p1');
    expect(first).toMatchObject({ taskId: id, start: 'first', build: { transition: 'start', reason: 'initiator' } });
    await expect(jobPreviousConversation(h.app, first!.build.id, 'p1')).rejects.toMatchObject({ code: 'bad_input' });
    await completeBuildJob(h.app, first!.build.id, { holder: 'p1' });
    expect(await previousConversation(h.app, id, 1024 * 1024)).toEqual([]); // no snapshot yet

    await meteredPause(h.app, h.alice, id, { reason: 'task_manual_pause' });
    const stop = await acquireBuildJob(h.app, 'p1');
    expect(stop).toMatchObject({ start: null, build: { transition: 'stop' } });
    await completeBuildJob(h.app, stop!.build.id, { holder: 'p1' });

    await resumeTask(h.app, h.alice, id);
    const resume = await acquireBuildJob(h.app, 'p1');
    expect(resume).toMatchObject({ taskId: id, start: 'resume', build: { reason: 'task_resume' } });
    const messages = await jobPreviousConversation(h.app, resume!.build.id, 'p1');
    expect(messages).toEqual(h.agent.messages);
    expect(messages).toHaveLength(4);
    // Only the job's holder may read it, and only while it runs.
    const refused = await jobPreviousConversation(h.app, resume!.build.id, 'p2').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HiatusError);
    expect(refused).toMatchObject({ code: 'conflict' });
    await completeBuildJob(h.app, resume!.build.id, { holder: 'p1' });
    await expect(jobPreviousConversation(h.app, resume!.build.id, 'p1')).rejects.toMatchObject({ code: 'conflict' });
  });

  it("hands a resume the task's whole history across agent lifetimes, newest within the budget", async () => {
    h.agent.say(2);
    const first = h.agent.messages.map((m) => m.content);
    const { id } = await h.task();
    await meteredPause(h.app, h.alice, id, { reason: 'task_manual_pause' });
    await h.settle();
    await resumeTask(h.app, h.alice, id);
    await h.settle();
    // A new agent, with a conversation of its own.
    h.agent.messages = [];
    h.agent.say(3);
    for (const m of h.agent.messages) m.content = `second agent: ${m.content}`;
    const second = h.agent.messages.map((m) => m.content);
    await meteredPause(h.app, h.alice, id, { reason: 'task_manual_pause' });
    await h.settle();
    const whole = await previousConversation(h.app, id, 1024 * 1024);
    expect(whole.map((m) => m.content)).toEqual([...first, ...second]);
    // Renumbered as one conversation.
    expect(whole.map((m) => m.id)).toEqual([0, 1, 2, 3, 4]);
    // A budget keeps the newest messages.
    const bytes = Buffer.byteLength(JSON.stringify(whole.at(-1)));
    expect((await previousConversation(h.app, id, bytes)).map((m) => m.content)).toEqual(second.slice(-1));
  });
});
