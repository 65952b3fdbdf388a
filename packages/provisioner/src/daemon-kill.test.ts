import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, codeOf } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { type DaemonProcess, killEveryDaemon, type LogLine, startDaemon, within } from '../test/daemon-process.ts';
import { dockerOrSkip } from '../test/docker-setup.ts';
import { environOf, eventually, gatedAgent, getJson, killTaskProcesses, processesOfTask } from '../test/harness.ts';
import { startJobProxy } from '../test/job-proxy.ts';
import { dockerLabels } from './docker-driver.ts';
import { dockerClient } from './docker-engine.ts';
import { demoImage, ensureDemoImage } from './docker-image.ts';

/*
 * A `hiatus-provisioner` SIGKILLed between any two steps of a start, a stop or a delete, then a new
 * daemon started: every task ends in the status its last acknowledged operation says (active after
 * a create, paused after a pause, deleted after a delete), no build fails, no agent runs but the one
 * the task's status says, and a deleted task's workspace (folder, volume) is gone. The steps are
 * reached by conditions, never by time: a proxy between the daemon and the server holds the job's
 * answer (acquired, not yet read) or its report (done, not yet heard); a gated agent holds a start
 * before its agent answers; a stubborn agent shows that it got SIGTERM. For the process driver and,
 * where an Engine answers, the docker driver.
 */

afterAll(killEveryDaemon);
// A test that failed before its kill leaves its daemon: the next test's must be alone.
afterEach(killEveryDaemon);

/**
 * What a driver variant gives the test: its templates (`gated`: an agent that listens at once and
 * answers only once the test opens its gate; `stubborn`: gated, ignoring SIGTERM and marking that
 * it got one) and how to see its agents, by what the driver's own state does not decide.
 */
type Variant = {
  driver: string;
  /** Whether it can run here (the Engine answers, for docker). */
  available(): Promise<boolean>;
  /** Settings of a gated agent; `stubborn` adds the SIGTERM behaviour and a long stop grace. */
  settings(gates: string, stubborn: boolean): Promise<Record<string, unknown>>;
  /** Lets the task's gated agent answer, now or as soon as its start has made its workspace. */
  openGate(gates: string, taskId: string): Promise<void>;
  /** Whether the task's stubborn agent has got SIGTERM. */
  sigtermSeen(gates: string, taskId: string): Promise<boolean>;
  /** The agents running for a task: pids read from /proc, containers listed by label. */
  agentsOf(taskId: string): Promise<string[]>;
  /** The port on 127.0.0.1 an agent answers on. */
  portOf(agent: string): Promise<number>;
  /** Whether the task's workspace (a folder, a volume) is still there: a delete removes it. */
  workspaceLeft(dataDir: string, taskId: string): Promise<boolean>;
  /** Ends whatever a failed test left for the task. */
  cleanUp(taskId: string): Promise<void>;
};

/** A gated agent that ignores SIGTERM and leaves `<gate>.term` when it gets one (a stop under way; the gates are 1777). */
const stubbornCode = `
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
process.on('SIGTERM', () => writeFileSync(join(process.env.GATE_DIR, process.env.HIATUS_TASK_ID + '.term'), ''));
import(${JSON.stringify(gatedAgent)});
`;

const processVariant: Variant = {
  driver: 'process',
  available: async () => true,
  settings: async (gates, stubborn) => ({
    command: stubborn ? [process.execPath, '-e', stubbornCode] : [process.execPath, gatedAgent],
    env: { GATE_DIR: gates },
    startTimeoutMs: 600_000,
    // A stop waits this long after SIGTERM: the stubborn agent's stop is certainly under way when killed.
    ...(stubborn ? { stopGraceMs: 600_000 } : {}),
  }),
  openGate: (gates, taskId) => writeFile(join(gates, taskId), ''),
  sigtermSeen: async (gates, taskId) => existsSync(join(gates, `${taskId}.term`)),
  agentsOf: async (taskId) => (await processesOfTask(taskId)).map(String),
  portOf: async (pid) => Number((await environOf(Number(pid))).PORT),
  workspaceLeft: async (dataDir, taskId) => existsSync(join(dataDir, 'workspaces', taskId)),
  cleanUp: killTaskProcesses,
};

/**
 * The gated agent inside the demo image (which holds node), its gate in the task's volume (`/workspace`,
 * written from this host through the volume's mount point), on all the container's addresses.
 */
const containerGatedCode = (stubborn: boolean) => `
const { existsSync } = require('node:fs');
const { createServer } = require('node:http');
const gate = '/workspace/' + process.env.HIATUS_TASK_ID;
${stubborn ? "process.on('SIGTERM', () => console.log('got SIGTERM, ignored'));" : ''}
const send = (res, code, body) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
createServer((req, res) => {
  const route = req.method + ' ' + new URL(req.url || '/', 'http://agent').pathname;
  if (route === 'GET /status') return existsSync(gate) ? send(res, 200, { status: 'stable', agent_type: 'gated' }) : send(res, 503, { title: 'Service Unavailable', status: 503, detail: 'gated' });
  if (route === 'GET /messages') return send(res, 200, { messages: [] });
  send(res, 404, { title: 'Not Found', status: 404, detail: 'no route for ' + route });
}).listen(Number(process.env.PORT), '0.0.0.0');
`;

/** The mount point on this host of the task's volume, once its start has made it. */
async function volumeDir(taskId: string): Promise<string | undefined> {
  const { Volumes } = await dockerClient().listVolumes({ filters: { label: [`${dockerLabels.task}=${taskId}`] } });
  return Volumes?.[0]?.Mountpoint;
}

const runningContainers = (taskId: string) =>
  dockerClient().listContainers({
    filters: { label: [`${dockerLabels.task}=${taskId}`], status: ['running', 'paused'] },
  });

const dockerVariant: Variant = {
  driver: 'docker',
  available: dockerOrSkip,
  settings: async (_gates, stubborn) => ({
    image: (await ensureDemoImage()).image,
    command: [demoImage.node, '-e', containerGatedCode(stubborn)],
    user: demoImage.user,
    workspacePath: '/workspace',
    startTimeoutMs: 600_000,
    ...(stubborn ? { stopGraceSeconds: 600 } : {}),
  }),
  openGate: async (_gates, taskId) => {
    // The volume comes with the start, which may be a retry yet to come: written when it is there.
    void eventually(async () => {
      const dir = await volumeDir(taskId);
      expect(dir).toBeDefined();
      await writeFile(join(dir!, taskId), '');
    }, 300_000).catch(() => {});
  },
  sigtermSeen: async (_gates, taskId) => {
    const [container] = await runningContainers(taskId);
    if (!container) return false;
    const logs = await dockerClient().getContainer(container.Id).logs({ stdout: true, stderr: true });
    return logs.toString().includes('got SIGTERM, ignored');
  },
  agentsOf: async (taskId) => (await runningContainers(taskId)).map((c) => c.Id),
  portOf: async (id) => {
    const { NetworkSettings } = await dockerClient().getContainer(id).inspect();
    return Number(Object.values(NetworkSettings.Ports ?? {})[0]?.[0]?.HostPort);
  },
  workspaceLeft: async (_dataDir, taskId) => (await volumeDir(taskId)) !== undefined,
  cleanUp: async (taskId) => {
    const docker = dockerClient();
    const label = { label: [`${dockerLabels.task}=${taskId}`] };
    for (const c of await docker.listContainers({ all: true, filters: label })) {
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {});
    }
    for (const v of (await docker.listVolumes({ filters: label })).Volumes ?? []) {
      await docker
        .getVolume(v.Name)
        .remove({ force: true })
        .catch(() => {});
    }
  },
};

/** The variants that can run here (a missing Engine skips docker's with a message; under CI=true it fails). */
const variants: Variant[] = [];
for (const variant of [processVariant, dockerVariant]) if (await variant.available()) variants.push(variant);

describe.runIf(postgresServerUrl()).each(variants)('a $driver daemon killed at every step', (variant) => {
  let running: TestServer | undefined;
  let admin: ReturnType<typeof apiClient>;
  let provisionerKey: string;
  let dataDir: string;
  let gates: string;
  let proxy: Awaited<ReturnType<typeof startJobProxy>> | undefined;
  const taskIds: string[] = [];

  beforeAll(async () => {
    running = await startTestServer('postgres', {
      HIATUS_BUILTIN_PROVISIONER: 'false',
      // A job whose daemon is silent this long is handed out again: the kills' cost, kept short.
      HIATUS_PROVISIONER_STALE_MS: '2500',
      HIATUS_PROVISIONER_POLL_MS: '200',
    });
    admin = apiClient(running.server.url, running.adminToken);
    provisionerKey = (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'killed daemons' })).key;
    proxy = await startJobProxy(running.server.url);
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-daemon-kill-'));
    gates = join(dataDir, 'gates');
    await mkdir(gates);
    await chmod(gates, 0o1777); // the stubborn agent leaves its mark here, whichever user the driver runs it as
    for (const [name, stubborn] of [
      [`gated-${variant.driver}`, false],
      [`stubborn-${variant.driver}`, true],
    ] as const) {
      const settings = await variant.settings(gates, stubborn);
      expect(await codeOf(admin.templates.create.mutate({ name, driver: variant.driver, settings }))).toBe('OK');
    }
  }, 120_000);

  afterAll(async () => {
    await killEveryDaemon();
    for (const taskId of taskIds) await variant.cleanUp(taskId);
    await proxy?.close();
    await running?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  /** A daemon on the shared data directory, quick to poll and beat; `viaProxy` talks through the proxy. */
  function daemon(id: string, viaProxy: boolean): DaemonProcess {
    const url = viaProxy ? proxy!.url : running!.server.url;
    const flags = ['--url', url, '--id', id, '--data-dir', dataDir, '--heartbeat-ms', '300', '--wait-ms', '1000'];
    return startDaemon(flags, { HIATUS_TOKEN: provisionerKey });
  }

  const openGate = (taskId: string) => variant.openGate(gates, taskId);

  async function createTask(name: string, template: string) {
    const created = await admin.tasks.create.mutate({ name, prompt: `do ${name}`, template });
    taskIds.push(created.task.id);
    return created;
  }

  async function whenStatus(taskId: string, status: string) {
    return eventually(async () => {
      const task = await admin.tasks.get.query({ id: taskId });
      expect(task.status).toBe(status);
      return task;
    });
  }

  /** The job row as the database holds it. */
  const jobRow = (buildId: string) =>
    running!.server.app.db
      .selectFrom('workspace_builds')
      .where('id', '=', buildId)
      .select(['job_status', 'provisioner_id', 'job_attempts'])
      .executeTakeFirstOrThrow();

  async function kill(d: DaemonProcess): Promise<void> {
    d.signal('SIGKILL');
    expect(await within(60_000, 'the daemon to die', d.exited)).toBe('SIGKILL');
  }

  /** Starts a fresh daemon after a kill, lets it settle the task, then drains it. */
  async function recover(id: string, taskId: string, status: 'active' | 'paused' | 'deleted') {
    const next = daemon(id, false);
    const retried = await next.waitFor((l: LogLine) => l.taskId === taskId && l.msg === 'job started');
    expect(retried.attempt).toBeGreaterThanOrEqual(2);
    await next.waitFor((l) => l.taskId === taskId && l.msg === 'job succeeded');
    // A deleted task is no longer shown: its delete's job row says how it ended.
    const task = status === 'deleted' ? undefined : await whenStatus(taskId, status);
    if (!task) expect(await jobRow(String(retried.buildId))).toMatchObject({ job_status: 'succeeded' });
    next.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', next.exited)).toBe(0);
    return { task, next };
  }

  /** No build of the task failed: each cut job was run again, and succeeded. */
  async function noBuildFailed(taskId: string, transitions: string[]) {
    const { items } = await admin.builds.list.query({ taskId });
    expect(items.map((b) => [b.transition, b.jobStatus, b.error])).toEqual(
      transitions.map((t) => [t, 'succeeded', null]),
    );
  }

  /** The only agent of an active task is the one its agentUrl names, and it answers. */
  async function onlyItsAgent(task: { id: string; agentUrl: string | null } | undefined) {
    if (!task) throw new Error('an active task was expected');
    const agents = await variant.agentsOf(task.id);
    expect(agents).toHaveLength(1);
    expect(`http://127.0.0.1:${await variant.portOf(agents[0]!)}`).toBe(task.agentUrl);
    expect(await getJson(`${task.agentUrl}/status`)).toMatchObject({ status: 'stable' });
  }

  /** A task made active by a daemon that is then the one to kill during its pause. */
  async function activeTask(name: string, template: string, doomed: DaemonProcess) {
    const { task } = await createTask(name, template);
    await openGate(task.id);
    await whenStatus(task.id, 'active');
    await doomed.waitFor((l) => l.taskId === task.id && l.msg === 'job succeeded');
    return task;
  }

  it('after the server handed out the start and before the daemon read it', async () => {
    const doomed = daemon('start-acquired', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    // Held by its prompt, the one thing known before the task exists.
    const held = proxy!.holdAcquired((body) => body.includes('do start-acquired'));
    const { task, build } = await createTask('start-acquired', `gated-${variant.driver}`);
    expect((await held).body).toContain(build.id);
    expect(await jobRow(build.id)).toMatchObject({ job_status: 'running', provisioner_id: 'start-acquired' });
    expect(await variant.agentsOf(task.id)).toEqual([]);
    await kill(doomed);

    await openGate(task.id);
    const { task: active } = await recover('start-acquired-next', task.id, 'active');
    await onlyItsAgent(active);
    await noBuildFailed(task.id, ['start']);
  });

  it('after the agent was started and before it answered', async () => {
    const doomed = daemon('start-spawned', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const { task } = await createTask('start-spawned', `gated-${variant.driver}`);
    // Its agent listens behind a closed gate: the start cannot have ended.
    const [first] = await eventually(async () => {
      const agents = await variant.agentsOf(task.id);
      expect(agents).toHaveLength(1);
      const port = await variant.portOf(agents[0]!);
      expect((await fetch(`http://127.0.0.1:${port}/status`)).status).toBe(503);
      return agents;
    });
    await kill(doomed);
    // The half-started agent outlives its daemon until the retry stops it.
    expect(await variant.agentsOf(task.id)).toEqual([first]);

    await openGate(task.id);
    const { task: active } = await recover('start-spawned-next', task.id, 'active');
    await onlyItsAgent(active);
    expect(await variant.agentsOf(task.id)).not.toContain(first);
    await noBuildFailed(task.id, ['start']);
  });

  it('after the agent answered and before the server heard of it', async () => {
    const doomed = daemon('start-answered', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const { task, build } = await createTask('start-answered', `gated-${variant.driver}`);
    const held = proxy!.holdComplete((body) => body.includes(build.id));
    await openGate(task.id);
    expect((await held).body).toContain('agentUrl');
    const [first] = await variant.agentsOf(task.id);
    expect(first).toBeDefined();
    await kill(doomed);
    expect((await admin.tasks.get.query({ id: task.id })).status).toBe('initializing');

    const { task: active } = await recover('start-answered-next', task.id, 'active');
    await onlyItsAgent(active);
    expect(await variant.agentsOf(task.id)).not.toContain(first);
    await noBuildFailed(task.id, ['start']);
  });

  it('after the server handed out the stop and before the daemon read it', async () => {
    const doomed = daemon('stop-acquired', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const task = await activeTask('stop-acquired', `gated-${variant.driver}`, doomed);
    const [agent] = await variant.agentsOf(task.id);
    const held = proxy!.holdAcquired((body) => body.includes(task.id) && body.includes('"transition":"stop"'));
    const { build } = await admin.tasks.pause.mutate({ id: task.id });
    expect((await held).body).toContain(build.id);
    expect(await variant.agentsOf(task.id)).toEqual([agent]);
    await kill(doomed);

    await recover('stop-acquired-next', task.id, 'paused');
    expect(await variant.agentsOf(task.id)).toEqual([]);
    await noBuildFailed(task.id, ['stop', 'start']);
  });

  it('while the stop waits for its agent to end', async () => {
    const doomed = daemon('stop-stopping', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const task = await activeTask('stop-stopping', `stubborn-${variant.driver}`, doomed);
    await admin.tasks.pause.mutate({ id: task.id });
    // The agent got SIGTERM and ignores it: the stop waits out its grace.
    await eventually(async () => expect(await variant.sigtermSeen(gates, task.id)).toBe(true));
    expect(await variant.agentsOf(task.id)).toHaveLength(1);
    await kill(doomed);

    // The next daemon's reconcile ends the agent of a task that is pausing; the stop then has nothing left to do.
    const { next } = await recover('stop-stopping-next', task.id, 'paused');
    expect(next.lines.find((l) => l.msg === 'reconciled' && l.driver === variant.driver)).toMatchObject({
      stopped: [task.id],
    });
    expect(await variant.agentsOf(task.id)).toEqual([]);
    await noBuildFailed(task.id, ['stop', 'start']);
  });

  it('after the agent was stopped and before the server heard of it', async () => {
    const doomed = daemon('stop-stopped', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const task = await activeTask('stop-stopped', `gated-${variant.driver}`, doomed);
    // Only this daemon talks through the proxy, and its next report is the stop's (a start's names its agentUrl).
    const held = proxy!.holdComplete((body) => !body.includes('agentUrl'));
    const { build } = await admin.tasks.pause.mutate({ id: task.id });
    expect((await held).body).toContain(build.id);
    expect(await variant.agentsOf(task.id)).toEqual([]);
    await kill(doomed);
    expect((await admin.tasks.get.query({ id: task.id })).status).toBe('pausing');

    await recover('stop-stopped-next', task.id, 'paused');
    expect(await variant.agentsOf(task.id)).toEqual([]);
    await noBuildFailed(task.id, ['stop', 'start']);
  });

  it('after the server handed out the delete and before the daemon read it', async () => {
    const doomed = daemon('delete-acquired', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const task = await activeTask('delete-acquired', `gated-${variant.driver}`, doomed);
    const held = proxy!.holdAcquired((body) => body.includes(task.id) && body.includes('"transition":"delete"'));
    const { build } = await admin.tasks.delete.mutate({ id: task.id });
    expect((await held).body).toContain(build.id);
    expect(await variant.agentsOf(task.id)).toHaveLength(1);
    await kill(doomed);

    await recover('delete-acquired-next', task.id, 'deleted');
    expect(await variant.agentsOf(task.id)).toEqual([]);
    expect(await variant.workspaceLeft(dataDir, task.id)).toBe(false);
  });

  it('after the workspace was removed and before the server heard of it', async () => {
    const doomed = daemon('delete-done', true);
    await doomed.waitFor((l) => l.msg === 'reconciled');
    const task = await activeTask('delete-done', `gated-${variant.driver}`, doomed);
    const held = proxy!.holdComplete((body) => !body.includes('agentUrl'));
    const { build } = await admin.tasks.delete.mutate({ id: task.id });
    expect((await held).body).toContain(build.id);
    expect(await variant.agentsOf(task.id)).toEqual([]);
    expect(await variant.workspaceLeft(dataDir, task.id)).toBe(false);
    await kill(doomed);
    expect(await jobRow(build.id)).toMatchObject({ job_status: 'running', provisioner_id: 'delete-done' });

    await recover('delete-done-next', task.id, 'deleted');
    expect(await variant.agentsOf(task.id)).toEqual([]);
    expect(await variant.workspaceLeft(dataDir, task.id)).toBe(false);
  });
});
