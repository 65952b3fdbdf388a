import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient, codeOf } from './api-client.ts';
import { testBackends } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { startTestServer, type TestServer } from './test-server.ts';

type Message = { id: number; role: 'user' | 'agent'; content: string };

/** The conversation of the agent answering at `agentUrl`, read from the agent itself (AgentAPI). */
async function agentMessages(agentUrl: string): Promise<Message[]> {
  const response = await fetch(`${agentUrl}/messages`, { signal: AbortSignal.timeout(30_000) });
  return ((await response.json()) as { messages: Message[] }).messages;
}

const waitFor = <T>(check: () => Promise<T>) => vi.waitFor(check, { timeout: 60_000, interval: 50 });

// The README's second walk: a demo task paused and resumed, its resumed agent handed the previous
// conversation (HIATUS_START=resume, HIATUS_PREVIOUS_CONVERSATION), a template's resume recap queued
// first, and the prompt of an agent Hiatus does not start queued as its first message.
describe('a resumed agent continues (the built-in provisioner, the demo agent)', () => {
  let running: TestServer;
  let dataDir: string;
  let api: ReturnType<typeof apiClient>;
  const agents: FakeAgent[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-resume-'));
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_PROVISIONER_DIR: path.join(dataDir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
    api = apiClient(running.server.url, running.adminToken);
  }, 120_000);

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await running?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const whenStatus = (id: string, status: string) =>
    waitFor(async () => {
      const task = await api.tasks.get.query({ id });
      expect(task.status).toBe(status);
      return task;
    });

  /** Until the agent of task `id` has answered `content` (the demo agent answers `Done: "…"`). */
  const answered = (id: string, content: string) =>
    waitFor(async () => {
      const { agentUrl } = await api.tasks.get.query({ id });
      const messages = await agentMessages(agentUrl!);
      expect(messages.map((m) => m.content)).toContain(`Done: "${content.slice(0, 60)}"`);
      return messages;
    });

  /** A task of `template` that has answered its prompt and "message BRAVO", then paused (with its pre-pause notice). */
  async function pausedTask(name: string, template: string): Promise<string> {
    const { task } = await api.tasks.create.mutate({ name, prompt: 'list the files', template });
    await whenStatus(task.id, 'active');
    await answered(task.id, 'list the files');
    await api.tasks.send.mutate({ id: task.id, input: 'message BRAVO' });
    await answered(task.id, 'message BRAVO');
    await api.tasks.pause.mutate({ id: task.id, wait: true });
    await whenStatus(task.id, 'paused');
    return task.id;
  }

  it('hands the resumed demo agent the previous conversation, and its first answer names how many messages it got', async () => {
    const id = await pausedTask('second-walk', 'demo');
    const snapshot = await api.snapshots.get.query({ taskId: id });
    expect(snapshot.messages.map((m) => m.content)).toEqual(
      expect.arrayContaining(['list the files', 'message BRAVO', 'Done: "message BRAVO"']),
    );

    await api.tasks.resume.mutate({ id, wait: true });
    const resumed = await whenStatus(id, 'active');
    const [first] = await agentMessages(resumed.agentUrl!);
    expect(first).toMatchObject({
      role: 'agent',
      content: `Resumed: I was given ${snapshot.messageCount} earlier messages (the last you sent: "Save your work: this task will pause.").`,
    });
    // The file the driver wrote: the snapshot's messages as JSON, readable by its owner alone.
    const file = path.join(dataDir, 'provisioner', 'conversations', `${id}.json`);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(JSON.parse(JSON.stringify(snapshot.messages)));
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // It does not start the task over: the prompt is not worked on again, and the task goes on.
    expect((await agentMessages(resumed.agentUrl!)).map((m) => m.content)).not.toContain('list the files');
    await api.tasks.send.mutate({ id, input: 'message CHARLIE' });
    await answered(id, 'message CHARLIE');

    await api.tasks.delete.mutate({ id });
    await waitFor(async () => expect(existsSync(file)).toBe(false));
  });

  it("queues a template's resume recap first, on tasks.resume and on a send that resumes, within its byte budget", async () => {
    const demo = await api.templates.get.query({ name: 'demo' });
    const created = await api.templates.create.mutate({
      name: 'demo-recap',
      driver: 'process',
      settings: demo.settings as Record<string, unknown>,
      prePauseNotice: null,
      resume: { message: true, messageMaxBytes: 1024 },
    });
    expect(created.resume).toEqual({ message: true, messageMaxBytes: 1024 });
    expect((await api.templates.get.query({ name: 'demo-recap' })).resume).toEqual(created.resume);

    const id = await pausedTask('recap-walk', 'demo-recap');
    // A send that resumes: the recap is queued in the resume's transaction, before the sent message.
    const sent = await api.tasks.send.mutate({ id, input: 'message CHARLIE', resumeIfPaused: true });
    expect(sent).toMatchObject({ queued: true, resumed: true });
    const { agentUrl } = await whenStatus(id, 'active');
    const messages = await answered(id, 'message CHARLIE');
    const users = messages.filter((m) => m.role === 'user').map((m) => m.content);
    expect(users).toHaveLength(2);
    const [recap, after] = users as [string, string];
    expect(after).toBe('message CHARLIE');
    expect(recap).toMatch(
      /^This task was paused and has been resumed with a new agent\. Its original prompt:\n\nlist the files\n/,
    );
    expect(recap).toContain('[user] message BRAVO');
    expect(recap).toContain('[agent] Done: "message BRAVO"');
    expect(Buffer.byteLength(recap)).toBeLessThanOrEqual(1024);
    expect(messages[0]).toMatchObject({ role: 'agent', content: expect.stringMatching(/^Resumed: I was given 4 /) });
    expect(agentUrl).toBeTruthy();

    // tasks.resume gets one too: the first message its new agent receives is the recap.
    await api.tasks.pause.mutate({ id, wait: true });
    await api.tasks.resume.mutate({ id, wait: true });
    await whenStatus(id, 'active');
    const again = await waitFor(async () => {
      const { agentUrl: url } = await api.tasks.get.query({ id });
      const now = await agentMessages(url!);
      expect(now.filter((m) => m.role === 'agent')).toHaveLength(2); // "Resumed: …" and the recap's answer
      return now;
    });
    expect(again[1]).toMatchObject({ role: 'user', content: expect.stringContaining('[user] message CHARLIE') });

    // A resume setting the driver cannot run is refused, as settings are.
    expect(
      await codeOf(
        api.templates.create.mutate({
          name: 'bad-resume',
          driver: 'command',
          settings: { start: 'true', stop: 'true' },
          resume: { command: ['claude', '--continue'] },
        }),
      ),
    ).toBe('BAD_REQUEST');
    expect(await codeOf(api.templates.update.mutate({ name: 'demo-recap', resume: { messageMaxBytes: 10 } }))).toBe(
      'BAD_REQUEST',
    );

    // Its agent goes with it: no demo agent outlives the test.
    await api.tasks.delete.mutate({ id });
    await waitFor(async () =>
      expect((await api.tasks.get.query({ id })).latestBuild).toMatchObject({
        transition: 'delete',
        jobStatus: 'succeeded',
      }),
    );
  });

  it('queues the prompt of an agent Hiatus does not start as its first message, unless sendPrompt is false', async () => {
    const agent = await new FakeAgent().start();
    agents.push(agent);
    const { task } = await api.tasks.create.mutate({
      name: 'own-agent',
      prompt: 'make the build green',
      agentUrl: agent.url,
    });
    await waitFor(async () => expect(agent.received).toEqual(['make the build green']));
    expect((await api.tasks.get.query({ id: task.id })).status).toBe('active');

    const quiet = await new FakeAgent().start();
    agents.push(quiet);
    const { task: told } = await api.tasks.create.mutate({
      name: 'own-agent-told',
      prompt: 'it knows already',
      agentUrl: quiet.url,
      sendPrompt: false,
    });
    await whenStatus(told.id, 'active');
    // Nothing waits in its inbox: a send goes to the agent at once, and it is the first it gets.
    expect(await api.tasks.send.mutate({ id: told.id, input: 'hello' })).toMatchObject({ queued: false });
    expect(quiet.received).toEqual(['hello']);

    expect(
      await codeOf(
        api.tasks.create.mutate({ name: 'no-such', prompt: 'p', template: 'demo', sendPrompt: false } as never),
      ),
    ).toBe('BAD_REQUEST');
  });
});
