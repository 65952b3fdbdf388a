import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { containersOf, dockerOrSkip, removeTaskLeftovers, volumesOf } from '../test/docker-setup.ts';
import { eventually, getJson, useHarness } from '../test/harness.ts';
import { dockerDriver, dockerLabels, isolatedNetwork } from './docker-driver.ts';
import { dockerClient } from './docker-engine.ts';
import { forgetCoolingTimers, readHotPause, writeHotPause } from './docker-hot-pause.ts';
import { demoImage, ensureDemoImage } from './docker-image.ts';
import type { BuildSpec } from './driver.ts';

const docker = await dockerOrSkip();
const spyAgent = await readFile(new URL('../test/docker-spy-agent.mjs', import.meta.url), 'utf8');

const h = useHarness();
let image = '';

/** The demo agent's settings; it must listen on the container's own addresses. */
const demoSettings = (extra: object = {}) => ({
  image,
  command: [demoImage.node, demoImage.agent],
  env: { DEMO_HOST: '0.0.0.0', DEMO_WORK_MS: '50' },
  user: demoImage.user,
  ...extra,
});

/** The demo agent, after it appended HIATUS_START to notes.txt in its working directory (the volume). */
const notingSettings = () =>
  demoSettings({
    command: [
      demoImage.node,
      '-e',
      `require('fs').appendFileSync('notes.txt', process.env.HIATUS_START + '\\n'); import('${demoImage.agent}')`,
    ],
  });

/** Runs a command in a running container and answers its stdout. */
async function execIn(containerId: string, cmd: string[]): Promise<string> {
  const exec = await dockerClient()
    .getContainer(containerId)
    .exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const all = Buffer.concat(chunks);
  let out = '';
  for (let offset = 0; offset + 8 <= all.length; ) {
    const length = all.readUInt32BE(offset + 4);
    if (all[offset] === 1) out += all.subarray(offset + 8, offset + 8 + length).toString('utf8');
    offset += 8 + length;
  }
  return out;
}

const tasksMade: string[] = [];
const spec = (overrides: Partial<BuildSpec>) => {
  const made = h.spec(overrides);
  tasksMade.push(made.taskId);
  return made;
};

describe.skipIf(!docker)('docker driver', () => {
  beforeAll(async () => {
    ({ image } = await ensureDemoImage());
  });

  afterEach(async () => {
    // Whatever a test's tasks left on the Engine goes, even when it failed.
    await removeTaskLeftovers(tasksMade.splice(0));
  });

  it('runs the agent in a labelled, limited container; a pause removes it, a resume makes a new one on the same volume', async () => {
    const settings = notingSettings();
    const started = await dockerDriver.run(
      spec({ prompt: 'hello', settings: { ...settings, cpus: 0.5, memoryMb: 128, pids: 64 } }),
      h.ctx,
    );
    expect(started.agentUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await eventually(async () =>
      expect(await getJson(`${started.agentUrl}/messages`)).toMatchObject({
        messages: [
          { role: 'user', content: 'hello' },
          { role: 'agent', content: 'Done: "hello"' },
        ],
      }),
    );

    const [first] = await containersOf(h.taskId);
    expect(first).toBeDefined();
    const info = await dockerClient().getContainer(first!.Id).inspect();
    expect(info.Config.Labels).toMatchObject({
      [dockerLabels.task]: h.taskId,
      [dockerLabels.workspace]: `workspace-${h.taskId}`,
      [dockerLabels.provisioner]: expect.stringMatching(/^[0-9a-f]{12}$/),
      [dockerLabels.build]: expect.stringMatching(/^build-/),
    });
    expect(info.HostConfig).toMatchObject({
      Init: true,
      NanoCpus: 500_000_000,
      Memory: 128 * 2 ** 20,
      PidsLimit: 64,
      NetworkMode: isolatedNetwork,
    });
    expect(info.Config.User).toBe(demoImage.user);
    // Only the task's volume is mounted: no Docker socket, nothing of the host.
    expect(info.Mounts.map((m) => ({ type: m.Type, destination: m.Destination }))).toEqual([
      { type: 'volume', destination: demoImage.workspace },
    ]);
    expect(await volumesOf(h.taskId)).toHaveLength(1);

    await dockerDriver.run(spec({ transition: 'stop', reason: 'task_manual_pause', settings }), h.ctx);
    expect(await containersOf(h.taskId)).toEqual([]);
    expect(await volumesOf(h.taskId)).toHaveLength(1);

    const conversation = [
      { id: 0, role: 'user' as const, content: 'hello', time: new Date().toISOString() },
      { id: 1, role: 'agent' as const, content: 'Done: "hello"', time: new Date().toISOString() },
    ];
    const resumed = await dockerDriver.run(
      spec({ reason: 'task_resume', start: 'resume', previousConversation: conversation, settings }),
      h.ctx,
    );
    const [second] = await containersOf(h.taskId);
    expect(second!.Id).not.toBe(first!.Id);
    expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
      messages: [{ role: 'agent', content: 'Resumed: I was given 2 earlier messages (the last you sent: "hello").' }],
    });
    // What the first agent wrote is still there for the second.
    expect(await execIn(second!.Id, [demoImage.node, '-p', "require('fs').readFileSync('notes.txt', 'utf8')"])).toBe(
      'first\nresume\n\n',
    );

    await dockerDriver.run(spec({ transition: 'delete', reason: 'task_delete', settings }), h.ctx);
    expect(await containersOf(h.taskId)).toEqual([]);
    expect(await volumesOf(h.taskId)).toEqual([]);
  });

  it('a start replaces a container its task left behind; reconcile removes those of tasks that should not run', async () => {
    const keep = h.taskId;
    const drop = h.newTaskId();
    const settings = demoSettings({ readOnlyRoot: true });
    await dockerDriver.run(spec({ settings }), h.ctx);
    await dockerDriver.run(spec({ settings }), h.ctx); // again, as after a crash mid-start
    expect(await containersOf(keep)).toHaveLength(1);
    const info = await dockerClient()
      .getContainer((await containersOf(keep))[0]!.Id)
      .inspect();
    expect(info.HostConfig).toMatchObject({ ReadonlyRootfs: true, Tmpfs: { '/tmp': expect.any(String) } });

    await dockerDriver.run(spec({ taskId: drop, settings }), h.ctx);
    const stopped = await dockerDriver.reconcile((taskId) => taskId === keep, h.ctx);
    expect(stopped).toEqual([drop]);
    expect(await containersOf(drop)).toEqual([]);
    expect(await containersOf(keep)).toHaveLength(1);
  });

  it('a hot pause freezes the container, a resume thaws the same agent, and at hotPauseSeconds it stops for real', async () => {
    const settings = demoSettings({ hotPauseSeconds: 600 });
    const started = await dockerDriver.run(spec({ prompt: 'hello', settings }), h.ctx);
    await eventually(async () =>
      expect(await getJson(`${started.agentUrl}/messages`)).toMatchObject({
        messages: [{ role: 'user' }, { role: 'agent', content: 'Done: "hello"' }],
      }),
    );
    const paused = await dockerDriver.run(spec({ transition: 'stop', reason: 'task_manual_pause', settings }), h.ctx);
    expect(paused).toEqual({ pauseStage: 'hot', coldAt: expect.any(String) });
    expect(Date.parse(paused.coldAt as string)).toBeGreaterThan(Date.now());
    const [frozen] = await containersOf(h.taskId);
    expect(frozen).toMatchObject({ Id: started.containerId, State: 'paused' });

    const resume = { reason: 'task_resume', start: 'resume' as const, previousConversation: [], settings };
    const thawed = await dockerDriver.run(spec({ ...resume, previousOutputs: started }), h.ctx);
    expect(thawed).toEqual({ agentUrl: started.agentUrl, containerId: started.containerId, resumedFrom: 'hot' });
    // The same agent, its memory intact: not a new one told what came before.
    expect(await getJson(`${thawed.agentUrl}/messages`)).toMatchObject({
      messages: [{ role: 'user', content: 'hello' }, { role: 'agent' }],
    });

    // A short hot pause ends by itself: the container is stopped and removed at its deadline.
    const brief = demoSettings({ hotPauseSeconds: 1 });
    await dockerDriver.run(spec({ transition: 'stop', reason: 'task_manual_pause', settings: brief }), h.ctx);
    await eventually(async () => expect(await containersOf(h.taskId)).toEqual([]));
    expect(await readHotPause(h.dataDir, h.taskId)).toBeNull();
    const again = await dockerDriver.run(spec({ ...resume, previousOutputs: thawed }), h.ctx);
    expect(again.containerId).not.toBe(started.containerId);
  });

  it('reconcile lets a hot pause run its course, and stops a frozen container past its deadline', async () => {
    const settings = demoSettings({ hotPauseSeconds: 600 });
    const started = await dockerDriver.run(spec({ settings }), h.ctx);
    await dockerDriver.run(spec({ transition: 'stop', reason: 'task_auto_pause', settings }), h.ctx);
    forgetCoolingTimers(); // as if the provisioner that froze it had died
    expect(await dockerDriver.reconcile(() => false, h.ctx)).toEqual([]);
    expect(await containersOf(h.taskId)).toMatchObject([{ Id: started.containerId, State: 'paused' }]);

    const record = await readHotPause(h.dataDir, h.taskId);
    await writeHotPause(h.dataDir, h.taskId, { ...record!, coldAt: new Date(Date.now() - 1000).toISOString() });
    forgetCoolingTimers();
    expect(await dockerDriver.reconcile(() => false, h.ctx)).toEqual([h.taskId]);
    expect(await containersOf(h.taskId)).toEqual([]);
  });

  it('whatever a provisioner killed between two steps leaves, the next build or a reconcile undoes', async () => {
    const settings = demoSettings();
    const engine = dockerClient();
    const only = async () => {
      const all = await containersOf(h.taskId);
      expect(all.length).toBeLessThanOrEqual(1);
      return all[0];
    };
    // Killed after starting the container, before its job was reported: the task should not run (its
    // start failed as stale), so a reconcile removes it; the volume is the task's until its delete.
    await dockerDriver.run(spec({ settings }), h.ctx);
    expect(await dockerDriver.reconcile(() => false, h.ctx)).toEqual([h.taskId]);
    expect(await containersOf(h.taskId)).toEqual([]);
    expect(await volumesOf(h.taskId)).toHaveLength(1);

    // Killed after creating the container, before starting it: the next start replaces it; a
    // reconcile removes one even when its task should run (it is not running).
    const started = await dockerDriver.run(spec({ settings }), h.ctx);
    const made = await engine.getContainer(started.containerId as string).inspect();
    await engine.getContainer(made.Id).remove({ force: true });
    const created = await engine.createContainer({
      name: made.Name.slice(1),
      Image: made.Config.Image,
      Cmd: made.Config.Cmd,
      Labels: made.Config.Labels,
      HostConfig: { Mounts: [{ Type: 'volume', Source: made.Mounts[0]!.Name!, Target: demoImage.workspace }] },
    });
    expect(await only()).toMatchObject({ Id: created.id, State: 'created' });
    const again = await dockerDriver.run(spec({ settings }), h.ctx);
    expect(await only()).toMatchObject({ Id: again.containerId, State: 'running' });
    await engine.getContainer(again.containerId as string).stop({ t: 0 });
    expect(await dockerDriver.reconcile(() => true, h.ctx)).toEqual([]);
    expect(await containersOf(h.taskId)).toEqual([]);

    // Killed between a stop's two calls (stopped, not removed): the stop run again removes it.
    const third = await dockerDriver.run(spec({ settings }), h.ctx);
    await engine.getContainer(third.containerId as string).stop({ t: 0 });
    expect(await only()).toMatchObject({ State: 'exited' });
    await dockerDriver.run(spec({ transition: 'stop', reason: 'task_manual_pause', settings }), h.ctx);
    expect(await containersOf(h.taskId)).toEqual([]);

    // Killed between a hot pause's freeze and its record: a frozen container without a deadline is
    // past it, and a reconcile stops it.
    const fourth = await dockerDriver.run(spec({ settings: { ...settings, hotPauseSeconds: 600 } }), h.ctx);
    await engine.getContainer(fourth.containerId as string).pause();
    expect(await dockerDriver.reconcile(() => false, h.ctx)).toEqual([h.taskId]);
    expect(await containersOf(h.taskId)).toEqual([]);

    // Killed between a delete's two steps (container gone, volume left): the delete run again removes it.
    await dockerDriver.run(spec({ transition: 'delete', reason: 'task_delete', settings }), h.ctx);
    expect(await volumesOf(h.taskId)).toEqual([]);
    await dockerDriver.run(spec({ transition: 'delete', reason: 'task_delete', settings }), h.ctx);
  });

  it('a failed start says why and leaves no container behind', async () => {
    const missing = `hiatus-no-such-image:${randomUUID()}`;
    await expect(dockerDriver.run(spec({ settings: demoSettings({ image: missing }) }), h.ctx)).rejects.toThrow(
      `the image ${missing} is not on this Docker host, and the docker driver never pulls`,
    );
    const exits = demoSettings({ command: [demoImage.node, '-e', "console.error('no key given'); process.exit(3)"] });
    await expect(dockerDriver.run(spec({ settings: exits }), h.ctx)).rejects.toThrow(
      "the agent's container exited with code 3 before answering: no key given",
    );
    expect(await containersOf(h.taskId)).toEqual([]);
  });

  it("the agent reads no secret of the provisioner or of Docker, and cannot reach another task's agent", async () => {
    const secret = `secret-${randomUUID()}`;
    process.env.HIATUS_TEST_PROVISIONER_SECRET = secret;
    process.env.SPY_PROVISIONER_SECRET = secret; // a name the process driver would hand down
    try {
      const other = h.newTaskId();
      const otherStarted = await dockerDriver.run(spec({ taskId: other, settings: demoSettings() }), h.ctx);
      const [otherContainer] = await containersOf(other);
      const otherInfo = await dockerClient().getContainer(otherContainer!.Id).inspect();
      const otherAddress = otherInfo.NetworkSettings.Networks[isolatedNetwork]!.IPAddress;
      const gateway = otherInfo.NetworkSettings.Networks[isolatedNetwork]!.Gateway;
      const otherPort = new URL(otherStarted.agentUrl as string).port;
      const targets = [`${otherAddress}:${demoImage.port}`, `${gateway}:${otherPort}`, `127.0.0.1:${otherPort}`];

      const spy = await dockerDriver.run(
        spec({
          settings: demoSettings({
            command: [demoImage.node, '--input-type=module', '-e', spyAgent],
            env: { SPY_TARGETS: targets.join(',') },
          }),
        }),
        h.ctx,
      );
      const found = (await getJson(`${spy.agentUrl}/spy`)) as {
        init: string[];
        parent: string[];
        all: Record<string, string[]>;
        sockets: string[];
        targets: Record<string, string>;
      };
      const seen = JSON.stringify(found);
      expect(seen).not.toContain(secret);
      expect(found.init).toContain(`HIATUS_TASK_ID=${h.taskId}`);
      expect(found.sockets).toEqual([]);
      // Nothing of dockerd's own environment either (PATH and HOME aside, which Docker sets alike).
      const dockerdEnv = await dockerdEnvironment();
      for (const entry of dockerdEnv.filter((e) => !/^(PATH|HOME|HOSTNAME|TERM)=/.test(e))) {
        expect(seen).not.toContain(entry);
      }
      for (const target of targets) expect(found.targets[target]).not.toBe('connected');
      // The other agent does answer, from the host.
      expect(await getJson(`${otherStarted.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    } finally {
      delete process.env.HIATUS_TEST_PROVISIONER_SECRET;
      delete process.env.SPY_PROVISIONER_SECRET;
    }
  });
});

/** dockerd's environment, read from /proc when this test runs where dockerd does (else none). */
async function dockerdEnvironment(): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    try {
      const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
      if (comm === 'dockerd') return (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean);
    } catch {
      // gone meanwhile
    }
  }
  return [];
}
