import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHiatusClient, type Task } from '../../../../packages/client/src/index.ts';
import { apiClient } from '../../test/api-client.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { testAdminToken, testServerConfig } from '../../test/test-server.ts';
import { type ChangeNotice, changesChannel } from '../db/events.ts';
import { createLogger } from '../logger.ts';
import { type RunningServer, startServer } from '../server.ts';

/** Waits on a condition: generous, since it costs nothing when the condition holds early. */
const patience = { timeout: 30_000 };

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

  it('sees a pause made on the other server, in tasks.watch and events.watch, through its notification', async () => {
    const [here, there] = servers as [RunningServer, RunningServer];
    const api = apiClient(there.url, testAdminToken);
    const { task } = await api.tasks.create.mutate({ name: 'watched', prompt: 'p', agentUrl: agent.url });
    const client = createHiatusClient({ url: here.url, token: testAdminToken });
    await vi.waitFor(async () => expect((await api.tasks.get.query({ id: task.id })).status).toBe('active'), patience);

    // What reaches `here` from other processes: once a NOTIFY of the test's own arrives, it listens.
    const notices: ChangeNotice[] = [];
    const onChange = (notice: ChangeNotice) => notices.push(notice);
    here.app.events.on('change', onChange);
    const probe = randomUUID();
    await vi.waitFor(
      async () => {
        await sql`SELECT pg_notify(${changesChannel}, ${JSON.stringify({ taskId: probe })})`.execute(there.app.db);
        expect(notices.some((n) => n.taskId === probe)).toBe(true);
      },
      { ...patience, interval: 100 },
    );

    // The events watch starts after the task's last event: it cannot miss the pause, whenever it connects.
    const last = (await api.events.list.query({ taskId: task.id })).items.at(-1)!;
    const statuses: Array<Task['status']> = [];
    const events: Array<{ id: string; type: string }> = [];
    const taskWatch = client.tasks.watch.subscribe({ id: task.id }, { onData: (t) => statuses.push(t.status) });
    const eventWatch = client.events.watch.subscribe(
      { taskId: task.id, after: last.id },
      { onData: ({ data }) => events.push({ id: data.id, type: data.type }) },
    );
    try {
      // The task watch is open once it has said where it starts.
      await vi.waitFor(() => expect(statuses).toEqual(['active']), patience);
      await api.tasks.pause.mutate({ id: task.id });
      await vi.waitFor(() => {
        expect(
          statuses.some((s) => s === 'pausing' || s === 'paused'),
          'tasks.watch saw the pause',
        ).toBe(true);
        expect(
          events.map((e) => e.type),
          'events.watch saw the pause',
        ).toContain('task.pausing');
      }, patience);
      // The pause's own notice reached `here` (how soon: pnpm bench:watch).
      const pausing = events.find((e) => e.type === 'task.pausing')!;
      expect(notices).toContainEqual(expect.objectContaining({ eventId: pausing.id, taskId: task.id }));
    } finally {
      taskWatch.unsubscribe();
      eventWatch.unsubscribe();
      here.app.events.off('change', onChange);
    }
  });
});
