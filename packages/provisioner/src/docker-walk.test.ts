import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { killEveryDaemon, startDaemon, within } from '../test/daemon-process.ts';
import { containersOf, dockerOrSkip, removeTaskLeftovers, volumesOf } from '../test/docker-setup.ts';
import { eventually, getJson } from '../test/harness.ts';
import { dockerClient } from './docker-engine.ts';
import { demoImage } from './docker-image.ts';

const docker = await dockerOrSkip();

describe.runIf(docker && postgresServerUrl())('the demo-docker template, walked by a daemon', () => {
  let running: TestServer | undefined;
  let dataDir = '';
  const taskIds: string[] = [];

  beforeAll(async () => {
    // The server makes demo-docker itself, Docker being reachable; a daemon of its own runs the jobs.
    running = await startTestServer('postgres', {
      HIATUS_BUILTIN_PROVISIONER: 'false',
      HIATUS_PROVISIONER_STALE_MS: '3000',
      HIATUS_PROVISIONER_POLL_MS: '200',
    });
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-docker-walk-'));
  }, 180_000);

  afterAll(async () => {
    await killEveryDaemon();
    await removeTaskLeftovers(taskIds);
    await running?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  /** A daemon of this server serving docker jobs only, quick to poll and to beat. */
  const daemon = (key: string) =>
    startDaemon(
      [
        '--url',
        running!.server.url,
        '--data-dir',
        dataDir,
        '--drivers',
        'docker',
        '--wait-ms',
        '1000',
        '--heartbeat-ms',
        '300',
      ],
      { HIATUS_TOKEN: key },
    );

  it('creates a task in a container, pauses it (container gone, volume kept), resumes it, deletes it', async () => {
    const admin = apiClient(running!.server.url, running!.adminToken);
    const template = await admin.templates.get.query({ name: 'demo-docker' });
    expect(template).toMatchObject({ driver: 'docker', settings: { image: 'hiatus-demo-agent:demo' } });

    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'docker-host' });
    const one = daemon(key);
    await one.waitFor((l) => l.msg === 'reconciled');

    const { task } = await admin.tasks.create.mutate({ name: 'boxed', prompt: 'Say hello', template: 'demo-docker' });
    taskIds.push(task.id);
    const whenStatus = (status: string) =>
      eventually(async () => {
        const now = await admin.tasks.get.query({ id: task.id });
        expect(now.status).toBe(status);
        return now;
      });
    const active = await whenStatus('active');
    expect(active.agentUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await eventually(async () =>
      expect(await getJson(`${active.agentUrl}/messages`)).toMatchObject({
        messages: [{ role: 'user' }, { role: 'agent', content: 'Done: "Say hello"' }],
      }),
    );
    expect(await containersOf(task.id)).toHaveLength(1);

    await admin.tasks.pause.mutate({ id: task.id });
    await whenStatus('paused');
    expect(await containersOf(task.id)).toEqual([]);
    expect(await volumesOf(task.id)).toHaveLength(1);

    const snapshot = await admin.snapshots.get.query({ taskId: task.id });
    await admin.tasks.resume.mutate({ id: task.id });
    const resumed = await whenStatus('active');
    // The daemon fetched the previous conversation and wrote it into the volume for the new container.
    expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
      messages: [
        {
          role: 'agent',
          content: expect.stringMatching(`^Resumed: I was given ${snapshot.messageCount} earlier messages`),
        },
      ],
    });

    await admin.tasks.delete.mutate({ id: task.id });
    await eventually(async () => {
      expect(await containersOf(task.id)).toEqual([]);
      expect(await volumesOf(task.id)).toEqual([]);
    });
    one.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', one.exited)).toBe(0);
  });

  it('a hot pause shows in tasks.get (the stop build says its stage), and a resume thaws the same agent', async () => {
    const admin = apiClient(running!.server.url, running!.adminToken);
    const demo = await admin.templates.get.query({ name: 'demo-docker' });
    await admin.templates.create.mutate({
      name: 'demo-docker-hot',
      driver: 'docker',
      // Reads leave env out (write-only): the demo agent's DEMO_HOST is given again.
      settings: { ...(demo.settings as Record<string, unknown>), env: { DEMO_HOST: '0.0.0.0' }, hotPauseSeconds: 600 },
    });
    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'docker-host-hot' });
    const one = daemon(key);
    const { task } = await admin.tasks.create.mutate({ name: 'hot', prompt: 'Say hi', template: 'demo-docker-hot' });
    taskIds.push(task.id);
    const whenStatus = (status: string) =>
      eventually(async () => {
        const now = await admin.tasks.get.query({ id: task.id });
        expect(now.status).toBe(status);
        return now;
      });
    const active = await whenStatus('active');
    await admin.tasks.pause.mutate({ id: task.id });
    const paused = await whenStatus('paused');
    expect(paused.pauseStage).toBe('hot');
    expect(paused.latestBuild).toMatchObject({
      transition: 'stop',
      outputs: { pauseStage: 'hot', coldAt: expect.any(String) },
    });
    expect(await containersOf(task.id)).toMatchObject([{ State: 'paused' }]);

    await admin.tasks.resume.mutate({ id: task.id });
    const resumed = await whenStatus('active');
    expect(resumed.pauseStage).toBeNull();
    expect(resumed.agentUrl).toBe(active.agentUrl);
    expect(resumed.latestBuild?.outputs).toMatchObject({ resumedFrom: 'hot' });
    // The same agent: the conversation it had is still in its memory.
    await eventually(async () =>
      expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
        messages: [
          { role: 'user', content: 'Say hi' },
          { role: 'agent', content: 'Done: "Say hi"' },
        ],
      }),
    );
    // The thawed agent says its whole conversation again: the task's log shows each message once.
    const { entries } = await admin.tasks.logs.query({ id: task.id, limit: 100 });
    expect(entries.map((e) => e.content)).toEqual(['Say hi', 'Done: "Say hi"']);
    one.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', one.exited)).toBe(0);
  });

  it('a daemon killed in the middle of a start: the next one undoes its container and starts the task, one container in the end', async () => {
    const admin = apiClient(running!.server.url, running!.adminToken);
    // The demo agent, once a file named "go" is in its workspace: a start still waiting when its daemon is killed.
    const gated = `const fs = require('fs'); const t = setInterval(() => { if (fs.existsSync('go')) { clearInterval(t); import('${demoImage.agent}'); } }, 50);`;
    await admin.templates.create.mutate({
      name: 'docker-gated',
      driver: 'docker',
      settings: {
        image: 'hiatus-demo-agent:demo',
        command: [demoImage.node, '-e', gated],
        env: { DEMO_HOST: '0.0.0.0' },
        user: demoImage.user,
        startTimeoutMs: 600_000,
      },
    });
    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'docker-doomed' });
    const doomed = daemon(key);
    const { task } = await admin.tasks.create.mutate({ name: 'gated', prompt: 'p', template: 'docker-gated' });
    taskIds.push(task.id);
    const [first] = await eventually(async () => {
      const all = await containersOf(task.id);
      expect(all).toMatchObject([{ State: 'running' }]);
      return all;
    });
    doomed.signal('SIGKILL');
    expect(await within(60_000, 'the daemon to die', doomed.exited)).toBe('SIGKILL');

    const next = daemon(key);
    // Its job goes stale and back to the queue; the next daemon removes what the first left and starts anew.
    const second = await eventually(async () => {
      const all = await containersOf(task.id);
      expect(all).toMatchObject([{ State: 'running' }]);
      expect(all[0]!.Id).not.toBe(first!.Id);
      return all[0]!;
    });
    await dockerClient()
      .getContainer(second.Id)
      .exec({ Cmd: [demoImage.node, '-e', "require('fs').writeFileSync('go', '')"] })
      .then((exec) => exec.start({}))
      .then((stream) => new Promise((resolve) => stream.on('end', resolve).resume()));
    const active = await eventually(async () => {
      const now = await admin.tasks.get.query({ id: task.id });
      expect(now.status).toBe('active');
      return now;
    });
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await containersOf(task.id)).toMatchObject([{ Id: second.Id }]);
    next.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', next.exited)).toBe(0);
  });
});
