import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../src/db/connection.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';
import { seedStormTasks, tearDownStorm, waitForJobsToSettle } from './storm.ts';

const adminToken = 'send-pause-suite-admin-token-0123';
const tasksCount = 6;
const rounds = 8;

// Sends and pauses racing over two server processes, each task with an agent of its own that keeps
// its conversation (so a snapshot holds everything the agent took before it was fetched). The
// invariant, checked each time a task comes to rest paused: every message its agent took is in the
// stored snapshot; whatever the agent has not taken is still queued or cancelled. A message the
// agent took after the pause fetched its history (delivered, and missing) breaks it.
describe.runIf(postgresServerUrl())('send and pause exclude each other: two server processes', () => {
  let database: TestDatabase;
  let processes: ServerProcess[] = [];
  const agents: FakeAgent[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    const env = {
      ...databaseEnv(database),
      DATABASE_POOL_SIZE: '8',
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_PROVISIONER_POLL_MS: '50',
      // The fake agents answer from this busy test process: a pause must never fail for a slow answer.
      HIATUS_AGENT_TIMEOUT_MS: '30000',
      // The process announces that it listens at info.
      LOG_LEVEL: 'info',
    };
    processes = await Promise.all([startServerProcess(env), startServerProcess(env)]);
    for (let i = 0; i < tasksCount; i++) agents.push((await new FakeAgent().start()).say(2));
  }, 120_000);

  afterAll(async () => {
    await tearDownStorm(processes, agents, database);
  });

  it('never delivers a message that the next snapshot lacks', async () => {
    const { key, taskIds } = await seedStormTasks({
      urls: processes.map((p) => p.url),
      adminToken,
      agents,
      count: tasksCount,
      username: 'sender',
    });
    const apis = processes.map((p) => apiClient(p.url, key));
    const db = openDatabase(database.config);
    const statusOf = async (taskId: string, via = 0) => (await apis[via % 2]!.tasks.get.query({ id: taskId })).status;
    const waitUntil = (taskId: string, wanted: string[]) =>
      vi.waitFor(
        async () => {
          const status = await statusOf(taskId);
          if (!wanted.includes(status)) throw new Error(`task ${taskId} is ${status}, not ${wanted.join(' or ')}`);
        },
        { timeout: 60_000, interval: 5 },
      );
    /** Pauses through `via`, again while a racing change refuses it, until the task is paused. */
    const pauseUntilPaused = async (taskId: string, via: number) => {
      for (let attempt = 0; ; attempt++) {
        try {
          await apis[via % 2]!.tasks.pause.mutate({ id: taskId });
        } catch (error) {
          const code = (error as { data?: { code?: string } }).data?.code;
          if (code !== 'CONFLICT' || attempt > 50) throw error;
        }
        await waitUntil(taskId, ['paused', 'active']);
        if ((await statusOf(taskId)) === 'paused') return;
      }
    };
    const violations: string[] = [];
    let refused = 0;
    /** The invariant, for a task at rest (paused): what its agent took is in the snapshot. */
    const check = async (taskId: string, agent: FakeAgent, round: number) => {
      const snapshot = await sql<{ content: string }>`
        SELECT m->>'content' AS content
        FROM task_snapshots, jsonb_array_elements(log_snapshot->'data'->'messages') AS m
        WHERE task_id = ${taskId}`.execute(db.db);
      const inSnapshot = new Set(snapshot.rows.map((r) => r.content));
      for (const content of agent.received) {
        if (!inSnapshot.has(content)) {
          violations.push(
            `round ${round}: task ${taskId}'s agent took ${JSON.stringify(content)}, not in its snapshot`,
          );
        }
      }
    };

    try {
      await Promise.all(taskIds.map((id) => waitUntil(id, ['active'])));
      await Promise.all(taskIds.map((id, i) => pauseUntilPaused(id, i)));
      const sent: Array<{ taskId: string; content: string; messageId: string | null }> = [];
      await Promise.all(
        taskIds.map(async (taskId, i) => {
          const agent = agents[i]!;
          for (let round = 0; round < rounds; round++) {
            const via = (i + round) % 2;
            /** A send, acknowledged or refused (a task that is pausing takes none): never lost. */
            const send = async (content: string, through: number) => {
              try {
                const result = await apis[through % 2]!.tasks.send.mutate({
                  id: taskId,
                  input: content,
                  resumeIfPaused: true,
                });
                sent.push({ taskId, content, messageId: result.queued ? result.messageId : null });
              } catch (error) {
                if ((error as { data?: { code?: string } }).data?.code !== 'CONFLICT') throw error;
                refused++;
              }
            };
            // The message rides the resume; the pause follows as soon as the task is active, through
            // the other process, while a second message is sent to the active task.
            await send(`task ${i} round ${round} first`, via);
            await waitUntil(taskId, ['active']);
            await Promise.all([pauseUntilPaused(taskId, via + 1), send(`task ${i} round ${round} second`, via)]);
            await check(taskId, agent, round);
          }
        }),
      );
      await waitForJobsToSettle(db.db);
      for (const [i, taskId] of taskIds.entries()) await check(taskId, agents[i]!, rounds);
      expect(violations).toEqual([]);

      // Every acknowledged message is accounted for: taken by its agent (so in the snapshot), or
      // still queued.
      const inbox = await db.db.selectFrom('task_messages').select(['id', 'task_id', 'content', 'status']).execute();
      const queued = new Set(inbox.filter((m) => m.status === 'queued').map((m) => m.content));
      const received = new Set(agents.flatMap((a) => a.received));
      const unaccounted = sent.filter((s) => !received.has(s.content) && !queued.has(s.content));
      expect(unaccounted).toEqual([]);
      // Nothing was taken twice.
      for (const agent of agents) expect(new Set(agent.received).size).toBe(agent.received.length);
      process.stdout.write(
        `send/pause storm: ${sent.length} sends acknowledged, ${refused} refused, ${received.size} taken by agents, ${queued.size} still queued\n`,
      );
    } finally {
      await db.close();
    }
  }, 600_000);
});
