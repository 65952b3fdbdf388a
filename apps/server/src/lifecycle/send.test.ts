import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase, testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { activeTask, newMember, settle, testLifecycle } from '../../test/lifecycle-harness.ts';
import type { Db } from '../db/connection.ts';
import { createLogger } from '../logger.ts';
import type { Actor } from './actor.ts';
import type { Lifecycle } from './context.ts';
import { pauseTask } from './pause.ts';
import { startBuiltinProvisioner } from './provisioner.ts';
import { sendToTask } from './send.ts';
import { getTask } from './tasks.ts';

describe.each(testBackends())('send on %s', (backend) => {
  let database: TestDatabase & { db: Db };
  let lc: Lifecycle;
  let agent: FakeAgent;
  let alice: Actor;
  beforeAll(async () => {
    database = await createMigratedDatabase(backend);
    lc = testLifecycle(database.db, { agentTimeoutMs: 300, resumeWaitMs: 3_000 });
    alice = await newMember(database.db);
  });
  afterAll(() => database.drop());
  beforeEach(async () => {
    agent = await new FakeAgent().start();
    return () => agent.stop();
  });

  it('forwards a user message to an active, stable agent', async () => {
    const task = await activeTask(lc, alice, agent);
    const result = await sendToTask(lc, alice, task.id, 'please also fix the lint');
    expect(result).toMatchObject({ resumed: false, task: { status: 'active' } });
    expect(agent.received).toEqual(['please also fix the lint']);
    expect(agent.messages.at(-1)).toMatchObject({ role: 'user', content: 'please also fix the lint' });
  });

  it('refuses while the agent is busy, and tells a paused task to resume first', async () => {
    const task = await activeTask(lc, alice, agent);
    agent.status = 'running';
    await expect(sendToTask(lc, alice, task.id, 'hi')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('busy'),
    });
    agent.status = 'stable';
    await pauseTask(lc, alice, task.id, { reason: 'task_manual_pause' });
    await settle(lc);
    await expect(sendToTask(lc, alice, task.id, 'hi')).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('resumeIfPaused'),
    });
    expect(agent.received).toEqual([]);
  });

  it('resumes a paused task, waits until it is active, then sends', async () => {
    const task = await activeTask(lc, alice, agent);
    await pauseTask(lc, alice, task.id, { reason: 'task_manual_pause' });
    await settle(lc);
    const stop = startBuiltinProvisioner(lc, { pollIntervalMs: 50, staleAfterMs: 60_000, log: createLogger('silent') });
    try {
      const result = await sendToTask(lc, alice, task.id, 'carry on', { resumeIfPaused: true });
      expect(result).toMatchObject({ resumed: true, task: { status: 'active' } });
      expect(agent.received).toEqual(['carry on']);
      expect((await getTask(lc, alice, task.id)).latestBuild).toMatchObject({
        reason: 'task_resume',
        jobStatus: 'succeeded',
      });
    } finally {
      await stop();
    }
  });

  it('gives up with a timeout when no provisioner starts the resumed task', async () => {
    const quick = testLifecycle(database.db, { agentTimeoutMs: 300, resumeWaitMs: 300 });
    const task = await activeTask(quick, alice, agent);
    await pauseTask(quick, alice, task.id, { reason: 'task_manual_pause' });
    await settle(quick);
    await expect(sendToTask(quick, alice, task.id, 'hello?', { resumeIfPaused: true })).rejects.toMatchObject({
      code: 'timeout',
    });
    expect(agent.received).toEqual([]);
  });
});
