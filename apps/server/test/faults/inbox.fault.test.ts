import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../../src/db/connection.ts';
import { apiClient } from '../api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from '../databases.ts';
import { FakeAgent } from '../fake-agent.ts';
import { type ServerProcess, startServerProcess } from '../server-process.ts';
import { tearDownStorm } from '../storm.ts';

const adminToken = 'inbox-fault-admin-token-0123456789abcdef';
const slow = { timeout: 60_000, interval: 100 };

type Api = ReturnType<typeof apiClient>;

// Durable sends to paused tasks, with server processes killed without warning and several at once.
describe.runIf(postgresServerUrl())('the inbox across server processes', () => {
  let database: TestDatabase;
  let env: Record<string, string>;
  const processes: ServerProcess[] = [];
  const agents: FakeAgent[] = [];

  const start = async (extra: Record<string, string> = {}) => {
    const server = await startServerProcess({ ...env, ...extra });
    processes.push(server);
    return { server, api: apiClient(server.url, adminToken) };
  };
  const agent = async () => {
    const started = await new FakeAgent().start();
    agents.push(started);
    return started.say(2);
  };
  /** A task on `agent`, brought to `paused` through `api`. */
  const pausedTask = async (api: Api, on: FakeAgent, name: string) => {
    const { task } = await api.tasks.create.mutate({ name, prompt: 'p', agentUrl: on.url, sendPrompt: false });
    await vi.waitFor(async () => expect((await api.tasks.get.query({ id: task.id })).status).toBe('active'), slow);
    const paused = await api.tasks.pause.mutate({ id: task.id, wait: true, waitMs: 60_000 });
    expect(paused.task.status).toBe('paused');
    return task.id;
  };
  const messageStatuses = async (taskId: string) => {
    const { db, close } = openDatabase(database.config);
    try {
      const rows = await db
        .selectFrom('task_messages')
        .where('task_id', '=', taskId)
        .orderBy('position')
        .select(['content', 'status'])
        .execute();
      return rows.map((r) => `${r.content}:${r.status}`);
    } finally {
      await close();
    }
  };

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    env = {
      ...databaseEnv(database),
      DATABASE_POOL_SIZE: '4',
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_DEMO_TEMPLATE: 'false',
      HIATUS_PROVISIONER_POLL_MS: '100',
    };
  }, 120_000);

  afterAll(async () => {
    await tearDownStorm(processes, agents, database);
  });

  it('delivers a message queued just before a SIGKILL once, after the restart', async () => {
    const setup = await start();
    const on = await agent();
    const taskId = await pausedTask(setup.api, on, 'killed-after-queueing');
    await setup.server.stop();

    // A server without a provisioner: the resume stays queued, so nothing can go before the kill.
    const doomed = await start({ HIATUS_BUILTIN_PROVISIONER: 'false' });
    const sent = await doomed.api.tasks.send.mutate({ id: taskId, input: 'after the kill', resumeIfPaused: true });
    expect(sent).toMatchObject({ queued: true, resumed: true, task: { status: 'pending' } });
    await doomed.server.kill();
    expect(on.received).toEqual([]);
    expect(await messageStatuses(taskId)).toEqual(['after the kill:queued']);

    const restarted = await start();
    const listening = Date.now();
    await vi.waitFor(async () => expect(await messageStatuses(taskId)).toEqual(['after the kill:delivered']), slow);
    process.stdout.write(`inbox: delivered ${Date.now() - listening} ms after the restarted server listened\n`);
    expect(on.received).toEqual(['after the kill']);
    expect((await restarted.api.tasks.get.query({ id: taskId })).status).toBe('active');
    await restarted.server.stop();
  });

  it('resumes paused tasks and delivers every message once, in order, with three processes', async () => {
    const three = await Promise.all([1, 2, 3].map(() => start()));
    const apis = three.map((s) => s.api);
    const tasks = await Promise.all(
      [1, 2, 3].map(async (n) => {
        const on = await agent();
        return { on, id: await pausedTask(apis[n - 1]!, on, `three-${n}`) };
      }),
    );
    // Per task, two sends one after the other through different processes; the tasks at once.
    await Promise.all(
      tasks.map(async (task, n) => {
        for (const [i, content] of ['first', 'second'].entries()) {
          const api = apis[(n + i) % apis.length]!;
          // The first is queued with the resume; the second is queued, or goes at once if the first already went.
          await api.tasks.send.mutate({ id: task.id, input: `${content} ${n}`, resumeIfPaused: true });
        }
      }),
    );
    for (const [n, task] of tasks.entries()) {
      const expected = [`first ${n}`, `second ${n}`];
      await vi.waitFor(
        async () => expect(await messageStatuses(task.id)).toEqual(expected.map((m) => `${m}:delivered`)),
        slow,
      );
      expect(task.on.received).toEqual(expected);
    }
    // One resume per task, whichever process took it.
    const { db, close } = openDatabase(database.config);
    try {
      const resumes = await db
        .selectFrom('workspace_builds')
        .innerJoin('tasks', 'tasks.workspace_id', 'workspace_builds.workspace_id')
        .where(
          'tasks.id',
          'in',
          tasks.map((t) => t.id),
        )
        .where('workspace_builds.reason', '=', 'task_resume')
        .select('tasks.id')
        .execute();
      expect(resumes).toHaveLength(3);
    } finally {
      await close();
    }
  });
});
