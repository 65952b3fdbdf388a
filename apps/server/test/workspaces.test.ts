import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
// The provisioner's own test helper: which live processes carry a task's HIATUS_TASK_ID.
import { processesOfTask } from '../../../packages/provisioner/test/harness.ts';
import { repoRoot } from '../src/config.ts';
import { apiClient, codeOf } from './api-client.ts';
import { testBackends } from './databases.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const demoAgent = path.join(repoRoot, 'packages/provisioner/demo-agent/agent.mjs');
type Api = ReturnType<typeof apiClient>;

/** Whether a process (not a zombie) with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * What `check` gives once it gives something (not undefined or false). Generous: a wait on a
 * condition costs nothing once it holds.
 */
function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  return vi.waitFor(
    async () => {
      const value = await check();
      if (value === undefined || value === false) throw new Error(`still waiting for ${what}`);
      return value;
    },
    { timeout: 60_000, interval: 50 },
  );
}

// The built-in provisioner really starts and stops agents: real child processes of the demo agent,
// on the first backend of the run (PostgreSQL when there is one).
describe('workspaces from a process template, with the built-in provisioner', () => {
  let running: TestServer;
  let dataDir: string;
  let admin: Api;
  let member: Api;
  const pids = new Set<number>();

  const statusOf = (api: Api, id: string) => api.tasks.get.query({ id });
  const until = (api: Api, id: string, status: string) =>
    eventually(`task ${id} ${status}`, async () => {
      const task = await statusOf(api, id);
      return task.status === status ? task : undefined;
    });
  const latestStart = async (id: string) => {
    const { items } = await member.builds.list.query({ taskId: id, limit: 10 });
    return items.find((b) => b.transition === 'start' && b.jobStatus === 'succeeded');
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-workspaces-'));
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_PROVISIONER_DIR: dataDir,
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
    admin = apiClient(running.server.url, running.adminToken);
    const user = await admin.users.create.mutate({ username: 'walker' });
    member = apiClient(running.server.url, (await admin.apiKeys.create.mutate({ userId: user.id })).key);
    await admin.templates.create.mutate({
      name: 'walking',
      driver: 'process',
      settings: { command: ['node', demoAgent], env: { DEMO_WORK_MS: '100' } },
      parameters: [{ name: 'greeting', default: 'hello' }],
    });
  }, 60_000);

  afterAll(async () => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await running?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts an agent, stops it on pause keeping its history, and starts a new one on resume', async () => {
    const { task } = await member.tasks.create.mutate({
      name: 'walk',
      prompt: 'fix the flaky test',
      template: 'walking',
    });
    expect(task.agentUrl).toBeNull();
    const active = await until(member, task.id, 'active');
    const first = (await latestStart(task.id))!;
    const pid = first.outputs!.pid as number;
    pids.add(pid);
    expect(active.agentUrl).toBe(first.outputs!.agentUrl);
    expect(alive(pid)).toBe(true);
    expect((await fetch(`${active.agentUrl}/status`)).status).toBe(200);

    await member.tasks.send.mutate({ id: task.id, input: 'and add a test' });
    const live = await eventually('the reply', async () => {
      const page = await member.tasks.logs.query({ id: task.id });
      return page.entries.length === 4 ? page : undefined; // prompt, reply, message, reply
    });
    expect(live.source).toBe('live');

    const paused = await member.tasks.pause.mutate({ id: task.id });
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 4 });
    await until(member, task.id, 'paused');
    await eventually('the agent to be gone', () => !alive(pid));
    expect(await processesOfTask(task.id)).toEqual([]); // its whole process group too
    const logs = await member.tasks.logs.query({ id: task.id });
    expect(logs.source).toBe('snapshot');
    expect(logs.entries.map((e) => e.content)).toEqual(live.entries.map((e) => e.content));

    await member.tasks.resume.mutate({ id: task.id });
    const resumed = await until(member, task.id, 'active');
    const second = (await latestStart(task.id))!;
    pids.add(second.outputs!.pid as number);
    expect(resumed.agentUrl).toBe(second.outputs!.agentUrl);
    expect(resumed.agentUrl).not.toBe(active.agentUrl);
    expect(alive(second.outputs!.pid as number)).toBe(true);
    expect(second.templateId).toBe(first.templateId);
    await member.tasks.send.mutate({ id: task.id, input: 'welcome back' });
    const after = await eventually('the new agent to answer', async () => {
      const page = await member.tasks.logs.query({ id: task.id });
      return page.source === 'live' && page.entries.some((e) => e.content === 'welcome back') ? page : undefined;
    });
    expect(after.source).toBe('live');

    // An agent killed behind Hiatus's back: the task's log says the agent does not answer.
    process.kill(second.outputs!.pid as number, 'SIGKILL');
    await eventually('the agent to be gone', () => !alive(second.outputs!.pid as number));
    // (The live log serves a history fetched within HIATUS_LIVE_LOG_CACHE_MS: the death shows within that.)
    const orphaned = await eventually('the log to fall back to the snapshot', async () => {
      const page = await member.tasks.logs.query({ id: task.id });
      return page.source === 'snapshot' ? page : undefined;
    });
    expect(orphaned.notice).toMatch(/did not answer/);

    await member.tasks.delete.mutate({ id: task.id });
  });

  it('gives a pre-pause notice before the snapshot, so the agent’s answer to it is kept', async () => {
    await admin.templates.create.mutate({
      name: 'noticed',
      driver: 'process',
      settings: { command: ['node', demoAgent], env: { DEMO_WORK_MS: '300' } },
      prePauseNotice: { message: 'Save your work: this task will pause.', waitSeconds: 10 },
    });
    const { task } = await member.tasks.create.mutate({ name: 'noticed', prompt: 'start', template: 'noticed' });
    await until(member, task.id, 'active');
    await eventually(
      'the first answer',
      async () => (await member.tasks.logs.query({ id: task.id })).entries.length === 2,
    );
    const paused = await member.tasks.pause.mutate({ id: task.id });
    expect(paused.snapshot).toMatchObject({ taken: true, messageCount: 4 });
    const snapshot = await member.snapshots.get.query({ taskId: task.id });
    expect(snapshot.messages.slice(2).map((m) => m.content)).toEqual([
      'Save your work: this task will pause.',
      'Done: "Save your work: this task will pause."',
    ]);
    await member.tasks.delete.mutate({ id: task.id });
  });

  it.each([
    ['a command that is not found', { command: ['/nonexistent/agent'] }, /nonexistent|not found|ENOENT/i],
    ['a command that exits 1', { command: 'echo "no model configured" >&2; exit 1' }, /no model configured/],
    ['a command that never answers', { command: 'sleep 60', startTimeoutMs: 500 }, /did not answer|within/],
  ])('fails the build of %s with a readable error, leaving no process behind', async (_what, settings, error) => {
    const name = `broken-${Math.random().toString(36).slice(2, 8)}`;
    await admin.templates.create.mutate({ name, driver: 'process', settings });
    const { task } = await member.tasks.create.mutate({ name, prompt: '', template: name });
    const failed = await until(member, task.id, 'error');
    expect(failed.latestBuild).toMatchObject({ jobStatus: 'failed', error: expect.stringMatching(error) });
    expect(await processesOfTask(task.id)).toEqual([]);
  });

  it('refuses templates it cannot run, and parameters the template does not declare', async () => {
    expect(await codeOf(admin.templates.create.mutate({ name: 'nope', driver: 'teleport', settings: {} }))).toBe(
      'BAD_REQUEST',
    );
    expect(await codeOf(admin.templates.create.mutate({ name: 'nope', driver: 'process', settings: {} }))).toBe(
      'BAD_REQUEST',
    );
    expect(
      await codeOf(
        member.tasks.create.mutate({ name: 'p', prompt: '', template: 'walking', parameters: { colour: 'red' } }),
      ),
    ).toBe('BAD_REQUEST');
    expect(
      await codeOf(
        member.tasks.create.mutate({ name: 'p', prompt: '', template: 'walking', agentUrl: 'http://127.0.0.1:1' }),
      ),
    ).toBe('BAD_REQUEST');
    expect(
      await codeOf(member.templates.create.mutate({ name: 'mine', driver: 'process', settings: { command: 'x' } })),
    ).toBe('FORBIDDEN');
    expect(await codeOf(member.tasks.create.mutate({ name: 'p', prompt: '', template: 'missing' }))).toBe('NOT_FOUND');
  });

  it('versions templates: an update is a new version, an archived template takes no new task', async () => {
    const v2 = await admin.templates.update.mutate({ name: 'walking', description: 'the demo agent' });
    expect(v2).toMatchObject({ name: 'walking', version: 2, driver: 'process', description: 'the demo agent' });
    expect((await member.templates.get.query({ name: 'walking', version: 1 })).description).toBe('');
    expect((await member.templates.list.query()).find((t) => t.name === 'walking')?.version).toBe(2);
    await admin.templates.create.mutate({ name: 'old', driver: 'process', settings: { command: 'true' } });
    await admin.templates.archive.mutate({ name: 'old' });
    expect(await codeOf(member.tasks.create.mutate({ name: 'o', prompt: '', template: 'old' }))).toBe('CONFLICT');
    expect((await member.templates.list.query()).map((t) => t.name)).not.toContain('old');
  });
});
