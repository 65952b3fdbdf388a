import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { Actor } from '../../src/lifecycle/actor.ts';
import { pauseTask } from '../../src/lifecycle/pause.ts';
import { resumeTask } from '../../src/lifecycle/resume.ts';
import { getTask } from '../../src/lifecycle/tasks.ts';
import { createLogger } from '../../src/logger.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from '../databases.ts';
import { FakeAgent } from '../fake-agent.ts';
import { invariantViolations } from '../invariants.ts';
import { activeTask, newMember } from '../lifecycle-harness.ts';
import { clusterControl, pgCluster } from './cluster.ts';

const cluster = postgresServerUrl() ? clusterControl() : null;

describe.runIf(cluster)('PostgreSQL restarting under load', () => {
  let database: TestDatabase;
  let server: RunningServer;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    server = await startServer(
      {
        ...loadConfig({ PORT: '0', HIATUS_AUTO_PAUSE_INTERVAL_MS: '0', HIATUS_PROVISIONER_POLL_MS: '100' }),
        database: database.config,
      },
      createLogger('silent'),
    );
    agent = await new FakeAgent().start();
    agent.say(5);
    alice = await newMember(server.lifecycle.db);
  });
  afterAll(async () => {
    pgCluster(cluster!.version, 'start'); // whatever happened, leave PostgreSQL running
    await agent?.stop();
    await server?.stop();
    await database?.drop();
  });

  it('fails requests clearly while it is down, and recovers by itself when it is back', async () => {
    const lc = server.lifecycle;
    const tasks = await Promise.all([1, 2, 3, 4].map(() => activeTask(lc, alice, agent)));
    // Load: pauses and resumes keep coming while the database goes away.
    let stop = false;
    const outcomes = { ok: 0, failed: [] as string[] };
    const load = Promise.all(
      tasks.map(async (task) => {
        while (!stop) {
          try {
            const current = await getTask(lc, alice, task.id);
            if (current.status === 'active') await pauseTask(lc, alice, task.id, { reason: 'task_manual_pause' });
            else if (current.status === 'paused') await resumeTask(lc, alice, task.id);
            outcomes.ok++;
          } catch (error) {
            outcomes.failed.push((error as Error).message);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    pgCluster(cluster!.version, 'stop');
    const down = await fetch(`${server.url}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ reason: expect.stringMatching(/^database unreachable/) });
    await new Promise((r) => setTimeout(r, 1_000));
    pgCluster(cluster!.version, 'start');
    // Back without a restart of the service: readiness returns and the load goes on.
    const deadline = Date.now() + 20_000;
    while ((await fetch(`${server.url}/readyz`)).status !== 200) {
      if (Date.now() > deadline) throw new Error('the service did not recover');
      await new Promise((r) => setTimeout(r, 200));
    }
    const okAfter = outcomes.ok;
    await new Promise((r) => setTimeout(r, 1_500));
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
    expect(await invariantViolations(lc.db)).toEqual([]);
  });
});
