import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { type DaemonProcess, killEveryDaemon, startDaemon, within } from '../test/daemon-process.ts';
import { containersOf, dockerOrSkip, removeTaskLeftovers, volumesOf } from '../test/docker-setup.ts';
import { eventually } from '../test/harness.ts';
import { dockerLabels } from './docker-driver.ts';

const docker = await dockerOrSkip();

// Two Docker hosts stood in for by one Engine: two daemons with different tags and data
// directories, each running the docker jobs of the templates tagged for it.
describe.runIf(docker && postgresServerUrl())('two docker daemons with different tags, on one Engine', () => {
  let running: TestServer | undefined;
  let admin: ReturnType<typeof apiClient>;
  const dirs: string[] = [];
  const taskIds: string[] = [];
  const daemons: DaemonProcess[] = [];

  beforeAll(async () => {
    // The server makes demo-docker itself, Docker being reachable; its settings serve both hosts' templates.
    running = await startTestServer('postgres', { HIATUS_BUILTIN_PROVISIONER: 'false' });
    admin = apiClient(running.server.url, running.adminToken);
    const demo = await admin.templates.get.query({ name: 'demo-docker' });
    expect(demo.envNames).toEqual(['DEMO_HOST']);
    for (const host of ['a', 'b']) {
      await admin.templates.create.mutate({
        name: `docker-${host}`,
        driver: 'docker',
        // Reads leave out env values: the one demo-docker has is given again.
        settings: { ...(demo.settings as Record<string, unknown>), env: { DEMO_HOST: '0.0.0.0' } },
        provisionerTags: { host },
      });
    }
    const { key } = await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'docker-hosts' });
    for (const host of ['a', 'b']) {
      const dataDir = await mkdtemp(join(tmpdir(), `hiatus-docker-${host}-`));
      dirs.push(dataDir);
      const flags = ['--url', running.server.url, '--id', `docker-${host}`, '--data-dir', dataDir];
      const more = ['--drivers', 'docker', '--tag', `host=${host}`, '--wait-ms', '1000'];
      daemons.push(startDaemon([...flags, ...more], { HIATUS_TOKEN: key }));
    }
    await Promise.all(daemons.map((d) => d.waitFor((l) => l.msg === 'reconciled')));
  }, 180_000);

  afterAll(async () => {
    await killEveryDaemon();
    await removeTaskLeftovers(taskIds);
    await running?.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  const whenStatus = (taskId: string, status: string) =>
    eventually(async () => {
      const task = await admin.tasks.get.query({ id: taskId });
      // A failed build's error in the message, should it end there.
      expect(task.status, task.latestBuild?.error ?? '').toBe(status);
    }, 120_000);

  /** Which provisioner held each of the task's build jobs, oldest first. */
  const holders = (taskId: string) =>
    running!.server.app.db
      .selectFrom('workspace_builds')
      .innerJoin('tasks', 'tasks.workspace_id', 'workspace_builds.workspace_id')
      .where('tasks.id', '=', taskId)
      .orderBy('build_number')
      .select(['transition', 'provisioner_id as holder'])
      .execute();

  it("runs each host's containers by its own daemon, labelled with it, through a pause, a resume and a delete", async () => {
    const onA = (await admin.tasks.create.mutate({ name: 'boxed-a', prompt: 'p', template: 'docker-a' })).task.id;
    const onB = (await admin.tasks.create.mutate({ name: 'boxed-b', prompt: 'p', template: 'docker-b' })).task.id;
    taskIds.push(onA, onB);
    await whenStatus(onA, 'active');
    await whenStatus(onB, 'active');
    // A container carries its daemon's scope on the Engine: the id kept in that host's data directory.
    const scopes = await Promise.all(
      dirs.map(async (dir) => (await readFile(join(dir, 'docker', 'provisioner-id'), 'utf8')).trim()),
    );
    expect(new Set(scopes).size).toBe(2);
    for (const [taskId, scope] of [
      [onA, scopes[0]],
      [onB, scopes[1]],
    ] as const) {
      const [container, ...more] = await containersOf(taskId);
      expect(more).toEqual([]);
      expect(container?.Labels[dockerLabels.provisioner]).toBe(scope);
    }

    await admin.tasks.pause.mutate({ id: onA });
    await whenStatus(onA, 'paused');
    expect(await containersOf(onA)).toEqual([]);
    expect(await containersOf(onB)).toHaveLength(1); // B's untouched
    await admin.tasks.resume.mutate({ id: onA });
    await whenStatus(onA, 'active');
    expect((await containersOf(onA))[0]?.Labels[dockerLabels.provisioner]).toBe(scopes[0]);

    for (const taskId of [onA, onB]) await admin.tasks.delete.mutate({ id: taskId });
    await eventually(async () => {
      expect([...(await containersOf(onA)), ...(await containersOf(onB))]).toEqual([]);
      expect([...(await volumesOf(onA)), ...(await volumesOf(onB))]).toEqual([]);
    }, 120_000);
    const expected = (host: string, transitions: string[]) =>
      transitions.map((transition) => ({ transition, holder: host }));
    expect(await holders(onA)).toEqual(expected('docker-a', ['start', 'stop', 'start', 'delete']));
    expect(await holders(onB)).toEqual(expected('docker-b', ['start', 'delete']));

    for (const daemon of daemons) daemon.signal('SIGTERM');
    expect(await within(60_000, 'the daemons to drain', Promise.all(daemons.map((d) => d.exited)))).toEqual([0, 0]);
  }, 600_000);
});
