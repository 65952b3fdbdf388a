import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { insertUser } from '../../src/db/users.ts';
import type { Actor } from '../../src/domain/actor.ts';
import { waitForStatus } from '../../src/inbox/send.ts';
import { meteredPause, meteredResume } from '../../src/lifecycle/metered.ts';
import { createTask, getTask } from '../../src/lifecycle/tasks.ts';
import type { RunningServer } from '../../src/server.ts';
import { apiClient, codeOf } from '../api-client.ts';
import { postgresServerUrl } from '../databases.ts';
import { FakeAgent } from '../fake-agent.ts';
import { invariantViolations } from '../invariants.ts';
import { startTestServer, type TestServer, testAdminToken } from '../test-server.ts';
import { clusterControl, pgCluster } from './cluster.ts';

const cluster = postgresServerUrl() ? clusterControl() : null;

describe.runIf(cluster)('PostgreSQL restarting under load', () => {
  let running: TestServer;
  let server: RunningServer;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    running = await startTestServer('postgres', { HIATUS_PROVISIONER_POLL_MS: '100' });
    server = running.server;
    agent = await new FakeAgent().start();
    agent.say(5);
    const user = await insertUser(server.app.db, { username: 'alice' });
    alice = { kind: 'user', userId: user.id, role: user.role };
  });
  afterAll(async () => {
    pgCluster(cluster!.version, 'start'); // whatever happened, leave PostgreSQL running
    await agent?.stop();
    await running?.close();
  });

  it('fails requests clearly while it is down, and recovers by itself when it is back', async () => {
    const app = server.app;
    const tasks = await Promise.all(
      [1, 2, 3, 4].map(async (i) => {
        const { task } = await createTask(app, alice, { name: `load-${i}`, prompt: '', agentUrl: agent.url });
        return waitForStatus(app, task.id, 'active', 60_000); // the built-in provisioner starts it
      }),
    );
    // Load: pauses and resumes keep coming while the database goes away.
    let stop = false;
    const outcomes = { ok: 0, failed: [] as string[] };
    const load = Promise.all(
      tasks.map(async (task) => {
        while (!stop) {
          try {
            const current = await getTask(app, alice, task.id);
            if (current.status === 'active') await meteredPause(app, alice, task.id, { reason: 'task_manual_pause' });
            else if (current.status === 'paused') await meteredResume(app, alice, task.id);
            outcomes.ok++;
          } catch (error) {
            outcomes.failed.push((error as Error).message);
          }
          // Pacing, not waiting: with the database away each call fails at once.
          await new Promise((r) => setTimeout(r, 20));
        }
      }),
    );
    // The load is under way before the database goes: every task has been paused or resumed.
    await vi.waitFor(() => expect(outcomes.ok).toBeGreaterThanOrEqual(tasks.length), { timeout: 60_000 });
    pgCluster(cluster!.version, 'stop');
    const down = await fetch(`${server.url}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ reason: expect.stringMatching(/^database unreachable/) });
    // Through the API, a clear and typed answer: the database is away, try again.
    const api = apiClient(server.url, testAdminToken);
    expect(await codeOf(api.tasks.list.query({}))).toBe('SERVICE_UNAVAILABLE');
    expect(await codeOf(api.tasks.get.query({ id: tasks[0]!.id }))).toBe('SERVICE_UNAVAILABLE');
    // The load meets the outage before the database comes back.
    await vi.waitFor(() => expect(outcomes.failed.length).toBeGreaterThan(0), { timeout: 60_000 });
    pgCluster(cluster!.version, 'start');
    // Back without a restart of the service: readiness returns and the load goes on.
    await vi.waitFor(async () => expect((await fetch(`${server.url}/readyz`)).status).toBe(200), {
      timeout: 60_000,
      interval: 200,
    });
    const okAfter = outcomes.ok;
    expect(await codeOf(api.tasks.get.query({ id: tasks[0]!.id }))).toBe('OK');
    await vi.waitFor(() => expect(outcomes.ok).toBeGreaterThan(okAfter + tasks.length), { timeout: 60_000 });
    stop = true;
    await load;
    expect(outcomes.ok).toBeGreaterThan(okAfter);
    expect(outcomes.failed.length).toBeGreaterThan(0);
    // Each failure said what went wrong: the database was not there (not a hang, not a crash).
    for (const message of outcomes.failed) {
      expect(message).toMatch(
        /ECONNREFUSED|terminating connection|shutting down|Connection terminated|connect|starting up|not yet accepting/i,
      );
    }
    // The state is consistent: builds explain every status, each with its audit record.
    expect(await invariantViolations(app.db)).toEqual([]);
  });
});
