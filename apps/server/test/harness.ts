import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { App, AppSettings } from '../src/app.ts';
import { createApp } from '../src/create-app.ts';
import type { Db } from '../src/db/connection.ts';
import type { Task } from '../src/db/tasks.ts';
import { insertUser } from '../src/db/users.ts';
import type { UserActor, UserRole } from '../src/domain/actor.ts';
import { acquireBuildJob, completeBuildJob } from '../src/lifecycle/jobs.ts';
import { meteredPause } from '../src/lifecycle/metered.ts';
import { startBuiltinProvisioner } from '../src/lifecycle/provisioner.ts';
import { createTask, getTask } from '../src/lifecycle/tasks.ts';
import { createLogger } from '../src/logger.ts';
import { type BackendName, createMigratedDatabase, type TestDatabase } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { loopbackNetworks } from './networks.ts';
import { testProvisionerDir } from './paths.ts';

/**
 * Test settings: a healthy local agent always answers well within its timeout, even on a loaded
 * machine (a test about a slow agent sets a shorter one); a dead agent refuses at once anyway.
 * The fake agents and webhook receivers listen on loopback, so it is allowed.
 */
const fastSettings: Partial<AppSettings> = {
  agentTimeoutMs: 5_000,
  allowedAgentNetworks: loopbackNetworks,
  // And so do the webhook receivers.
  allowedWebhookNetworks: loopbackNetworks,
};

export type TaskOptions = {
  /** Where the factory leaves the task; `active` unless said. */
  status?: 'pending' | 'active' | 'pausing' | 'paused';
  owner?: UserActor;
  agent?: FakeAgent;
  name?: string;
  idleTimeoutSeconds?: number;
  /**
   * Queue the prompt as the agent's first inbox message, as `tasks.create` does by default. Off
   * unless asked: the factory's agent stands for one already at work on its prompt.
   */
  sendPrompt?: boolean;
};

export type HarnessOptions = {
  /** A fresh agent for every test (the default), or one for the whole suite. */
  agent?: 'each' | 'shared';
  /** Messages the agent holds when it starts. */
  say?: number;
};

/** What a suite's tests work with; every field is ready once the suite's `beforeAll` ran. */
export type Harness = {
  database: TestDatabase & { db: Db };
  db: Db;
  app: App;
  agent: FakeAgent;
  /** A member created once for the suite. */
  alice: UserActor;
  /** A new user of `role` (a member unless said). */
  member(role?: UserRole): Promise<UserActor>;
  /** Another app on a pool of its own: a second server process, as far as the database can tell. */
  otherApp(settings?: Partial<AppSettings>): App;
  /** A task of `owner` (alice) talking to `agent` (the suite's), brought to `status` (active). */
  task(options?: TaskOptions): Promise<Task>;
  /** Starts the built-in provisioner on the suite's app (polling every `pollIntervalMs`); returns its stop. */
  provisioner(pollIntervalMs: number): () => Promise<void>;
  /** Completes every queued build job, as a provisioner would; returns how many. */
  settle(outcome?: { error?: string }): Promise<number>;
  /** Makes the task's agent look idle since `seconds` ago, as if earlier auto-pause passes had seen it so. */
  idleFor(taskId: string, seconds: number): Promise<void>;
  /** Everything a failed operation must leave as it was: builds, snapshots and their stats, tasks. */
  state(): Promise<unknown>;
};

/** A suite's own fresh migrated database on `backend`, created before its tests and dropped after them. */
export function useDatabase(backend: BackendName): { database: TestDatabase & { db: Db }; db: Db } {
  const handle = {} as { database: TestDatabase & { db: Db }; db: Db };
  beforeAll(async () => {
    handle.database = await createMigratedDatabase(backend);
    handle.db = handle.database.db;
  });
  afterAll(() => handle.database?.drop());
  return handle;
}

/**
 * Registers a suite's hooks once (pg-boss's `test/hooks.ts` habit): a fresh migrated database on
 * `backend`, an app with `settings`, a member, and an agent; dropped after the suite.
 */
export function useHarness(
  backend: BackendName,
  settings: Partial<AppSettings> = {},
  options: HarnessOptions = {},
): Harness {
  const h = {} as Harness;
  const startAgent = async () => (await new FakeAgent().start()).say(options.say ?? 0);
  const storage = useDatabase(backend);

  beforeAll(async () => {
    h.database = storage.database;
    h.db = storage.db;
    h.app = createApp(h.db, { ...fastSettings, ...settings });
    h.alice = await h.member();
    if (options.agent === 'shared') h.agent = await startAgent();
  });
  afterAll(async () => {
    if (options.agent === 'shared') await h.agent?.stop();
  });
  if (options.agent !== 'shared') {
    beforeEach(async () => {
      const agent = await startAgent();
      h.agent = agent;
      return () => agent.stop();
    });
  }

  h.member = async (role = 'member') => {
    const user = await insertUser(h.db, { username: `u-${randomUUID().slice(0, 12)}`, role });
    return { kind: 'user', userId: user.id, role: user.role };
  };
  h.otherApp = (extra = {}) => createApp(h.database.open(), { ...fastSettings, ...settings, ...extra });
  h.provisioner = (pollIntervalMs) =>
    startBuiltinProvisioner(h.app, {
      dataDir: testProvisionerDir,
      pollIntervalMs,
      staleAfterMs: 60_000,
      log: createLogger('silent'),
    });
  h.settle = async (outcome = {}) => {
    let done = 0;
    for (let job = await acquireBuildJob(h.app, 'test'); job; job = await acquireBuildJob(h.app, 'test')) {
      await completeBuildJob(h.app, job.build.id, outcome);
      done++;
    }
    return done;
  };
  h.idleFor = async (taskId, seconds) => {
    await h.db
      .updateTable('tasks')
      .set({ agent_idle_since: new Date(Date.now() - seconds * 1000) })
      .where('id', '=', taskId)
      .execute();
  };
  h.task = async (task = {}) => {
    const owner = task.owner ?? h.alice;
    const { task: created } = await createTask(h.app, owner, {
      name: task.name ?? `task-${randomUUID().slice(0, 8)}`,
      prompt: 'make the build green',
      agentUrl: (task.agent ?? h.agent).url,
      idleTimeoutSeconds: task.idleTimeoutSeconds,
      sendPrompt: task.sendPrompt ?? false,
    });
    const status = task.status ?? 'active';
    if (status === 'pending') return created;
    await h.settle();
    if (status === 'active') return getTask(h.app, owner, created.id);
    await meteredPause(h.app, owner, created.id, { reason: 'task_manual_pause' });
    if (status === 'paused') await h.settle();
    return getTask(h.app, owner, created.id);
  };
  h.state = async () => {
    const [builds, snapshots, stats, tasks] = await Promise.all([
      h.db.selectFrom('workspace_builds').selectAll().orderBy('id').execute(),
      h.db.selectFrom('task_snapshots').selectAll().orderBy('task_id').execute(),
      h.db.selectFrom('task_snapshot_stats').selectAll().orderBy('task_id').execute(),
      h.db.selectFrom('tasks').selectAll().orderBy('id').execute(),
    ]);
    return { builds, snapshots, stats, tasks };
  };
  return h;
}
