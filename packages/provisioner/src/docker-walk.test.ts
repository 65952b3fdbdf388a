import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { killEveryDaemon, startDaemon, within } from '../test/daemon-process.ts';
import { dockerOrSkip } from '../test/docker-setup.ts';
import { eventually, getJson } from '../test/harness.ts';
import { dockerLabels } from './docker-driver.ts';
import { dockerClient } from './docker-engine.ts';

const docker = await dockerOrSkip();

const byTask = (taskId: string) => ({ filters: { label: [`${dockerLabels.task}=${taskId}`] } });
const containersOf = (taskId: string) => dockerClient().listContainers({ all: true, ...byTask(taskId) });
const volumesOf = async (taskId: string) => (await dockerClient().listVolumes(byTask(taskId))).Volumes ?? [];

describe.runIf(docker && postgresServerUrl())('the demo-docker template, walked by a daemon', () => {
  let running: TestServer | undefined;
  let dataDir = '';
  const taskIds: string[] = [];

  beforeAll(async () => {
    // The server makes demo-docker itself, Docker being reachable; a daemon of its own runs the jobs.
    running = await startTestServer('postgres', { HIATUS_BUILTIN_PROVISIONER: 'false' });
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-docker-walk-'));
  }, 180_000);

  afterAll(async () => {
    await killEveryDaemon();
    for (const taskId of taskIds) {
      for (const c of await containersOf(taskId)) await dockerClient().getContainer(c.Id).remove({ force: true });
      for (const v of await volumesOf(taskId)) await dockerClient().getVolume(v.Name).remove();
    }
    await running?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('creates a task in a container, pauses it (container gone, volume kept), resumes it, deletes it', async () => {
    const admin = apiClient(running!.server.url, running!.adminToken);
    const template = await admin.templates.get.query({ name: 'demo-docker' });
    expect(template).toMatchObject({ driver: 'docker', settings: { image: 'hiatus-demo-agent:demo' } });

    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'docker-host' });
    const daemon = startDaemon(
      ['--url', running!.server.url, '--data-dir', dataDir, '--drivers', 'docker', '--wait-ms', '1000'],
      { HIATUS_TOKEN: key },
    );
    await daemon.waitFor((l) => l.msg === 'reconciled');

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
    daemon.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', daemon.exited)).toBe(0);
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
    const daemon = startDaemon(
      ['--url', running!.server.url, '--data-dir', dataDir, '--drivers', 'docker', '--wait-ms', '1000'],
      { HIATUS_TOKEN: key },
    );
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
    expect(paused.latestBuild).toMatchObject({
      transition: 'stop',
      outputs: { pauseStage: 'hot', coldAt: expect.any(String) },
    });
    expect(await containersOf(task.id)).toMatchObject([{ State: 'paused' }]);

    await admin.tasks.resume.mutate({ id: task.id });
    const resumed = await whenStatus('active');
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
    daemon.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', daemon.exited)).toBe(0);
  });
});
