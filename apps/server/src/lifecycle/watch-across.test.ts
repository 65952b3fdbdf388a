import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHiatusClient, type Task } from '../../../../packages/client/src/index.ts';
import { apiClient } from '../../test/api-client.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { testAdminToken, testServerConfig } from '../../test/test-server.ts';
import { createLogger } from '../logger.ts';
import { type RunningServer, startServer } from '../server.ts';

// Two servers on one PostgreSQL database, each with its own pool and its own LISTEN connection:
// what one commits reaches the other's watchers through NOTIFY, not by polling.
describe.runIf(postgresServerUrl())('watching across servers', () => {
  let database: TestDatabase;
  const servers: RunningServer[] = [];
  let agent: FakeAgent;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    const config = testServerConfig();
    for (let i = 0; i < 2; i++) {
      servers.push(await startServer({ ...config, database: database.config }, createLogger('silent')));
    }
    agent = await new FakeAgent().start();
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await agent.stop();
    await database.drop();
  });

  it('sees a pause made on the other server within 100 ms, in tasks.watch and events.watch', async () => {
    const [here, there] = servers as [RunningServer, RunningServer];
    const api = apiClient(there.url, testAdminToken);
    const { task } = await api.tasks.create.mutate({ name: 'watched', prompt: 'p', agentUrl: agent.url });
    const client = createHiatusClient({ url: here.url, token: testAdminToken });
    const deadline = Date.now() + 10_000;
    while ((await api.tasks.get.query({ id: task.id })).status !== 'active' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    const statuses: Array<{ status: Task['status']; at: number }> = [];
    const events: Array<{ type: string; at: number }> = [];
    const taskWatch = client.tasks.watch.subscribe(
      { id: task.id },
      { onData: (t) => statuses.push({ status: t.status, at: Date.now() }) },
    );
    const eventWatch = client.events.watch.subscribe(
      { taskId: task.id },
      { onData: ({ data }) => events.push({ type: data.type, at: Date.now() }) },
    );
    try {
      // Both streams are open once the task watch has said where it starts.
      while (statuses.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await api.tasks.pause.mutate({ id: task.id });
      const committed = Date.now();
      while (
        (!statuses.some((s) => s.status === 'pausing' || s.status === 'paused') ||
          !events.some((e) => e.type === 'task.pausing')) &&
        Date.now() - committed < 5_000
      ) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const sawStatus = statuses.find((s) => s.status === 'pausing' || s.status === 'paused');
      const sawEvent = events.find((e) => e.type === 'task.pausing');
      expect(sawStatus, 'tasks.watch saw the pause').toBeDefined();
      expect(sawEvent, 'events.watch saw the pause').toBeDefined();
      expect(sawStatus!.at - committed).toBeLessThan(100);
      expect(sawEvent!.at - committed).toBeLessThan(100);
    } finally {
      taskWatch.unsubscribe();
      eventWatch.unsubscribe();
    }
  });
});
