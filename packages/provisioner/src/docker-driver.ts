import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { z } from 'zod';
import { waitForAgent } from './agent-status.ts';
import { defaults } from './defaults.ts';
import { dockerAddress, dockerClient, dockerStatus, engineMessage, engineUnreachable } from './docker-engine.ts';
import { readHotPause, removeHotPause, scheduleCooling, serialized, writeHotPause } from './docker-hot-pause.ts';
import { tarStream } from './docker-tar.ts';
import {
  type BuildOutputs,
  type BuildSpec,
  type Driver,
  type DriverContext,
  DriverError,
  parseSettings,
  startOf,
} from './driver.ts';
import { parameterVariable, taskEnv } from './task-env.ts';

/** Run with `/bin/sh -c` when a string (the image needs a shell), as the container's command when an argv. */
const dockerCommandSchema = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);
const absolutePath = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');

export const dockerSettingsSchema = z.strictObject({
  /** An image the Engine already holds: the driver never pulls. */
  image: z.string().min(1),
  /** Without it, the image's own command runs. */
  command: dockerCommandSchema.optional(),
  env: z.record(z.string(), z.string()).optional(),
  /** Where the task's volume is mounted, and the agent's working directory. */
  workspacePath: absolutePath.default('/workspace'),
  /** The port the agent listens on inside the container (given to it as PORT), on all its addresses. */
  port: z.number().int().min(1).max(65_535).default(defaults.dockerPort),
  cpus: z.number().positive().max(1024).optional(),
  memoryMb: z.number().int().min(6).optional(),
  pids: z.number().int().positive().default(defaults.dockerPids),
  /**
   * `none`: the container is on `hiatus-isolated`, a bridge the driver makes where containers cannot
   * reach one another nor, without NAT, anything beyond this host. Otherwise an existing network's name.
   */
  network: z.string().min(1).default('none'),
  /** `published`: the agent's port is published on 127.0.0.1 (a port Docker picks); `container`: its address on the network. */
  reach: z.enum(['published', 'container']).default('published'),
  /** `uid[:gid]` or a name the image knows; the image's own user without it. */
  user: z.string().min(1).optional(),
  readOnlyRoot: z.boolean().default(false),
  /** Mounts of memory-backed directories, path → options (`{"/tmp": "rw,size=64m"}`); a read-only root gets a `/tmp`. */
  tmpfs: z.record(absolutePath, z.string()).optional(),
  stopGraceSeconds: z.number().int().nonnegative().max(3600).default(defaults.dockerStopGraceSeconds),
  /**
   * A pause first freezes the container (`docker pause`, its memory kept) for this long, and a resume
   * meanwhile thaws it, the same agent at the same agentUrl; then it is stopped for real. 0: off.
   */
  hotPauseSeconds: z
    .number()
    .int()
    .nonnegative()
    .max(7 * 86_400)
    .default(0),
  startTimeoutMs: z.number().int().positive().default(defaults.startTimeoutMs),
});
export type DockerSettings = z.infer<typeof dockerSettingsSchema>;

/** The labels every container and volume of this driver carries, for reconcile to find them. */
export const dockerLabels = Object.freeze({
  task: 'dev.hiatus.task',
  workspace: 'dev.hiatus.workspace',
  build: 'dev.hiatus.build',
  provisioner: 'dev.hiatus.provisioner',
});

/** The network `network: "none"` puts agents on. */
export const isolatedNetwork = 'hiatus-isolated';

/** Where a resume's previous conversation is written, under the workspace volume. */
const conversationName = '.hiatus/previous-conversation.json';

/**
 * Runs each task's agent in a container of its own, on the Docker Engine of this host, with a named
 * volume for its workspace that outlives the container: a stop removes the container, a resume makes
 * a new one on the same volume, a delete removes both. The agent sees the template's env and
 * Hiatus's task variables only, no Docker socket, and only the limits and network the template gives.
 */
export const dockerDriver = {
  name: 'docker',
  settingsSchema: dockerSettingsSchema,
  /** A resume may run its own command over the kept volume, string or argv. */
  resumeCommandSchema: dockerCommandSchema,

  async run(spec: BuildSpec, ctx: DriverContext): Promise<BuildOutputs> {
    const settings = parseSettings('docker', dockerSettingsSchema, spec.settings);
    const names = await namesOf(ctx.dataDir, spec.taskId);
    // One task's builds and its hot pause's end, one at a time in this process.
    return serialized(names.container, () =>
      engineCall(async () => {
        if (spec.transition === 'start') {
          const thawed = startOf(spec) === 'resume' ? await thaw(spec, settings, names, ctx) : null;
          if (thawed) return thawed;
          await removeHotPause(ctx.dataDir, spec.taskId);
          return startContainer(spec, settings, names, ctx);
        }
        if (spec.transition === 'stop' && settings.hotPauseSeconds > 0 && pauseReasons.has(spec.reason)) {
          const frozen = await freeze(spec, settings, names, ctx);
          if (frozen) return frozen;
        }
        await removeHotPause(ctx.dataDir, spec.taskId);
        await removeContainer(names.container, settings.stopGraceSeconds, ctx, spec.taskId);
        if (spec.transition === 'delete') await removeVolume(names.volume);
        return {};
      }),
    );
  },

  async reconcile(shouldRun, ctx): Promise<string[]> {
    const scope = await scopeOf(ctx.dataDir);
    let containers: Docker.ContainerInfo[];
    try {
      containers = await dockerClient().listContainers({
        all: true,
        filters: { label: [`${dockerLabels.provisioner}=${scope}`] },
      });
    } catch (error) {
      // No Engine here, so no container of ours can run: nothing to reconcile.
      if (engineUnreachable(error)) return [];
      throw error;
    }
    const stopped = await Promise.all(
      containers.map(async (info) => {
        const taskId = info.Labels[dockerLabels.task];
        if (!taskId) return null;
        const running = info.State === 'running' || info.State === 'paused';
        if (info.State === 'paused') {
          // A hot pause not yet over goes on: its end is this process's to run now.
          const record = await readHotPause(ctx.dataDir, taskId);
          if (record?.containerId === info.Id && Date.parse(record.coldAt) > Date.now()) {
            const { container } = await namesOf(ctx.dataDir, taskId);
            scheduleCooling(ctx.dataDir, taskId, record.coldAt, () => coolDown(container, taskId, ctx));
            return null;
          }
          await removeHotPause(ctx.dataDir, taskId);
        }
        if (running && (await shouldRun(taskId))) return null;
        await removeContainer(info.Id, defaults.dockerStopGraceSeconds, ctx, taskId); // no template at hand
        return running ? taskId : null;
      }),
    );
    return stopped.filter((taskId) => taskId !== null);
  },
} satisfies Driver;

type Names = { scope: string; container: string; volume: string };

/** The reasons of a stop that pauses its task (a hot pause applies to these only). */
const pauseReasons = new Set(['task_manual_pause', 'task_auto_pause']);

/**
 * A hot pause: freezes the task's running container and records when it must stop for real. Null
 * when there is no running container to freeze (the stop then goes on as a cold one).
 */
async function freeze(
  spec: BuildSpec,
  settings: DockerSettings,
  names: Names,
  ctx: DriverContext,
): Promise<BuildOutputs | null> {
  const container = dockerClient().getContainer(names.container);
  const info = await inspectOrNull(container);
  if (!info?.State.Running) return null;
  if (!info.State.Paused) await container.pause();
  const coldAt = new Date(Date.now() + settings.hotPauseSeconds * 1000).toISOString();
  await writeHotPause(ctx.dataDir, spec.taskId, {
    containerId: info.Id,
    coldAt,
    stopGraceSeconds: settings.stopGraceSeconds,
  });
  scheduleCooling(ctx.dataDir, spec.taskId, coldAt, () => coolDown(names.container, spec.taskId, ctx));
  ctx.log?.('agent container frozen (hot pause)', { taskId: spec.taskId, container: info.Id, coldAt });
  return { pauseStage: 'hot', coldAt };
}

/**
 * A resume of a hot-paused task: thaws its container, the same agent at the same agentUrl (the
 * start that made it said where). Null when there is none, or it does not answer once thawed: the
 * resume then makes a new container.
 */
async function thaw(
  spec: BuildSpec,
  settings: DockerSettings,
  names: Names,
  ctx: DriverContext,
): Promise<BuildOutputs | null> {
  const container = dockerClient().getContainer(names.container);
  const info = await inspectOrNull(container);
  const previous = spec.previousOutputs;
  if (!info?.State.Paused || previous?.containerId !== info.Id || typeof previous.agentUrl !== 'string') return null;
  await removeHotPause(ctx.dataDir, spec.taskId);
  await container.unpause();
  const wait = await waitForAgent(previous.agentUrl, settings.startTimeoutMs, ctx.signal);
  if (!wait.ready) return null;
  ctx.log?.('agent container thawed (hot resume)', { taskId: spec.taskId, container: info.Id });
  return { agentUrl: previous.agentUrl, containerId: info.Id, resumedFrom: 'hot' };
}

/** The end of a hot pause, at its deadline: the frozen container is stopped for real, unless it was thawed meanwhile. */
function coolDown(name: string, taskId: string, ctx: DriverContext): Promise<void> {
  return serialized(name, async () => {
    const record = await readHotPause(ctx.dataDir, taskId);
    if (!record || Date.parse(record.coldAt) > Date.now()) return; // thawed, or paused again since
    await removeHotPause(ctx.dataDir, taskId);
    const info = await inspectOrNull(dockerClient().getContainer(name));
    if (info?.Id !== record.containerId || !info.State.Paused) return;
    await removeContainer(name, record.stopGraceSeconds, ctx, taskId);
    ctx.log?.('hot pause over: agent container stopped', { taskId, container: info.Id });
  }).catch((error: unknown) => ctx.log?.('could not end a hot pause', { taskId, error: engineMessage(error) }));
}

async function inspectOrNull(container: Docker.Container): Promise<Docker.ContainerInspectInfo | null> {
  try {
    return await container.inspect();
  } catch (error) {
    if (dockerStatus(error) === 404) return null;
    throw error;
  }
}

/**
 * This provisioner's identity on the Engine: a random id kept in its data directory, so daemons
 * sharing one data directory share their containers, and a reconcile touches no one else's.
 */
async function scopeOf(dataDir: string): Promise<string> {
  const file = join(dataDir, 'docker', 'provisioner-id');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(join(dataDir, 'docker'), { recursive: true });
  try {
    await writeFile(file, randomBytes(6).toString('hex'), { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // another daemon made it meanwhile
  }
  return (await readFile(file, 'utf8')).trim();
}

async function namesOf(dataDir: string, taskId: string): Promise<Names> {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(taskId)) {
    throw new DriverError(`task id ${JSON.stringify(taskId)} cannot name a container`);
  }
  const scope = await scopeOf(dataDir);
  const name = `hiatus-${scope}-${taskId}`;
  return { scope, container: name, volume: name };
}

/** Runs Engine calls, turning an unreachable Engine or its refusals into messages for the user. */
async function engineCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof DriverError) throw error;
    if (engineUnreachable(error)) {
      throw new DriverError(`Docker is not reachable at ${dockerAddress()}: ${engineMessage(error)}`, {
        cause: error,
      });
    }
    throw new DriverError(`Docker refused: ${engineMessage(error)}`, { cause: error });
  }
}

/** The variables Hiatus sets for a build (besides one per parameter), as taskEnv names them. */
const taskVariables = [
  'HIATUS_TASK_ID',
  'HIATUS_WORKSPACE_ID',
  'HIATUS_BUILD_ID',
  'HIATUS_TRANSITION',
  'HIATUS_REASON',
  'HIATUS_PROMPT',
  'HIATUS_PARAMETERS',
  'HIATUS_PREVIOUS_AGENT_URL',
  'HIATUS_START',
  'HIATUS_PREVIOUS_CONVERSATION',
];

/**
 * The agent's environment: the template's env and Hiatus's task variables, named one by one, so
 * nothing of this process's environment can reach the container whatever taskEnv inherits.
 */
function containerEnv(spec: BuildSpec, settings: DockerSettings, conversation: string | undefined): string[] {
  const templateEnv = settings.env ?? {};
  const env = taskEnv(spec, templateEnv, conversation);
  const given = new Set([
    ...Object.keys(templateEnv),
    ...taskVariables,
    ...Object.keys(spec.parameters).map(parameterVariable),
  ]);
  return Object.entries(env)
    .filter(([name, value]) => given.has(name) && value !== undefined)
    .map(([name, value]) => `${name}=${value}`)
    .concat(`PORT=${settings.port}`);
}

let isolatedReady: Promise<void> | undefined;

/** Creates `hiatus-isolated` once: no traffic between its containers, no NAT to the outside. */
function ensureIsolatedNetwork(): Promise<void> {
  isolatedReady ??= (async () => {
    const docker = dockerClient();
    const existing = await docker.listNetworks({ filters: { name: [isolatedNetwork] } });
    if (existing.some((n) => n.Name === isolatedNetwork)) return;
    try {
      await docker.createNetwork({
        Name: isolatedNetwork,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: { [dockerLabels.provisioner]: 'shared' },
        Options: {
          'com.docker.network.bridge.enable_icc': 'false',
          'com.docker.network.bridge.enable_ip_masquerade': 'false',
        },
      });
    } catch (error) {
      if (dockerStatus(error) !== 409) throw error; // made meanwhile by another provisioner
    }
  })().catch((error: unknown) => {
    isolatedReady = undefined;
    throw error;
  });
  return isolatedReady;
}

async function startContainer(
  spec: BuildSpec,
  settings: DockerSettings,
  names: Names,
  ctx: DriverContext,
): Promise<BuildOutputs> {
  const docker = dockerClient();
  // Never two copies of one task: a container left by a crash or a failed stop goes first.
  await removeContainer(names.container, settings.stopGraceSeconds, ctx, spec.taskId);
  const labels = {
    [dockerLabels.task]: spec.taskId,
    [dockerLabels.workspace]: spec.workspaceId,
    [dockerLabels.build]: spec.buildId,
    [dockerLabels.provisioner]: names.scope,
  };
  await docker.createVolume({ Name: names.volume, Labels: labels }); // the existing one, after a pause
  const network = settings.network === 'none' ? isolatedNetwork : settings.network;
  if (settings.network === 'none') await ensureIsolatedNetwork();

  const resume = startOf(spec) === 'resume';
  const conversation =
    resume && spec.previousConversation !== undefined
      ? `${settings.workspacePath.replace(/\/$/, '')}/${conversationName}`
      : undefined;
  const command = (resume && spec.resume?.command) || settings.command;
  const portKey = `${settings.port}/tcp`;
  const tmpfs = settings.tmpfs ?? (settings.readOnlyRoot ? { '/tmp': 'rw,nosuid,nodev,size=64m' } : undefined);

  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      name: names.container,
      Image: settings.image,
      ...(typeof command === 'string'
        ? { Entrypoint: ['/bin/sh', '-c'], Cmd: [command] }
        : command
          ? { Cmd: command }
          : {}),
      Env: containerEnv(spec, settings, conversation),
      WorkingDir: settings.workspacePath,
      ...(settings.user ? { User: settings.user } : {}),
      Labels: labels,
      ExposedPorts: { [portKey]: {} },
      HostConfig: {
        Init: true,
        Mounts: [{ Type: 'volume', Source: names.volume, Target: settings.workspacePath }],
        NetworkMode: network,
        ...(settings.reach === 'published'
          ? { PortBindings: { [portKey]: [{ HostIp: '127.0.0.1', HostPort: '' }] } }
          : {}),
        ...(settings.cpus ? { NanoCpus: Math.round(settings.cpus * 1e9) } : {}),
        ...(settings.memoryMb ? { Memory: settings.memoryMb * 2 ** 20, MemorySwap: settings.memoryMb * 2 ** 20 } : {}),
        PidsLimit: settings.pids,
        ReadonlyRootfs: settings.readOnlyRoot,
        ...(tmpfs ? { Tmpfs: tmpfs } : {}),
        RestartPolicy: { Name: 'no' },
      },
      StopTimeout: settings.stopGraceSeconds,
    });
  } catch (error) {
    if (dockerStatus(error) === 404 && /image/i.test(engineMessage(error))) {
      throw new DriverError(
        `the image ${settings.image} is not on this Docker host, and the docker driver never pulls: build or load it there first`,
      );
    }
    throw error;
  }

  let exited: { StatusCode?: number } | undefined;
  const exitSeen = new AbortController();
  const stopWatching = new AbortController();
  let why: string;
  try {
    if (conversation !== undefined) await writeConversation(container, spec, settings);
    await container.start();
    void container
      .wait({ condition: 'not-running', abortSignal: stopWatching.signal })
      .then((result: { StatusCode?: number }) => {
        exited = result;
        exitSeen.abort();
      })
      .catch(() => undefined);
    const agentUrl = await agentUrlOf(container, settings, network);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, exitSeen.signal]) : exitSeen.signal;
    const wait = await waitForAgent(agentUrl, settings.startTimeoutMs, signal);
    if (wait.ready) {
      ctx.log?.('agent container started', { taskId: spec.taskId, container: container.id, agentUrl });
      return { agentUrl, containerId: container.id };
    }
    why = exited
      ? `the agent's container exited with code ${exited.StatusCode} before answering`
      : ctx.signal?.aborted
        ? 'the start was cancelled before the agent answered'
        : `the agent did not answer GET /status within ${settings.startTimeoutMs} ms (last try: ${wait.lastTry})`;
  } catch (error) {
    if (engineUnreachable(error)) throw error;
    why = `the agent's container could not be started: ${engineMessage(error)}`;
  } finally {
    stopWatching.abort();
  }
  const output = await logTail(container);
  await removeContainer(container.id, 0, ctx, spec.taskId);
  throw new DriverError(why, { output });
}

/** Where Hiatus reaches the agent: its published port on 127.0.0.1, or its address on the network. */
async function agentUrlOf(container: Docker.Container, settings: DockerSettings, network: string): Promise<string> {
  const info = await container.inspect();
  if (settings.reach === 'published') {
    const port = info.NetworkSettings.Ports?.[`${settings.port}/tcp`]?.find((p) => p.HostIp === '127.0.0.1')?.HostPort;
    if (!port) throw new DriverError(`Docker published no port for the agent's ${settings.port}/tcp`);
    return `http://127.0.0.1:${port}`;
  }
  const address = info.NetworkSettings.Networks?.[network]?.IPAddress;
  if (!address) throw new DriverError(`the container has no address on the network ${network}`);
  return `http://${address}:${settings.port}`;
}

/**
 * Writes a resume's previous conversation into the volume, before the container starts: the
 * container is the only way in (the volume may live on another host than this process's files).
 * Owned by the container's user when it is numeric, mode 0600; else root's, mode 0644.
 */
async function writeConversation(container: Docker.Container, spec: BuildSpec, settings: DockerSettings) {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(settings.user ?? '0');
  const owner = numeric ? { uid: Number(numeric[1]), gid: Number(numeric[2] ?? numeric[1]) } : { uid: 0, gid: 0 };
  const [dir] = conversationName.split('/');
  const archive = tarStream([
    { type: 'dir', path: dir!, mode: numeric ? 0o700 : 0o755, ...owner },
    {
      type: 'file',
      path: conversationName,
      mode: numeric ? 0o600 : 0o644,
      ...owner,
      content: Buffer.from(JSON.stringify(spec.previousConversation)),
    },
  ]);
  await container.putArchive(archive, { path: settings.workspacePath });
}

/** The end of what the container printed, for a failed start's message. */
async function logTail(container: Docker.Container): Promise<string> {
  try {
    const logs = (await container.logs({
      stdout: true,
      stderr: true,
      follow: false,
      tail: defaults.dockerLogLines,
    })) as Buffer;
    const text = demultiplex(logs);
    return text.length > defaults.outputTailBytes ? text.slice(-defaults.outputTailBytes) : text;
  } catch {
    return '';
  }
}

/** A container without a TTY sends its logs in frames: [stream, 0, 0, 0, length (4 bytes)] + payload. */
function demultiplex(buffer: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + length));
    offset += 8 + length;
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Stops a container (SIGTERM to its init, which hands it on; SIGKILL after `graceSeconds`) and
 * removes it. True when it was running. One already gone is no error.
 */
async function removeContainer(
  nameOrId: string,
  graceSeconds: number,
  ctx: DriverContext,
  taskId: string,
): Promise<boolean> {
  const container = dockerClient().getContainer(nameOrId);
  let state: Docker.ContainerInspectInfo['State'];
  try {
    state = (await container.inspect()).State;
  } catch (error) {
    if (dockerStatus(error) === 404) return false;
    throw error;
  }
  const running = state.Running || state.Paused;
  const gone = (error: unknown) => {
    // 304: stopped already; 404: removed meanwhile; 409: its removal is already under way.
    if (![304, 404, 409].includes(dockerStatus(error) ?? 0)) throw error;
  };
  if (state.Paused) await container.unpause().catch(gone); // a frozen agent gets its grace too
  if (running) await container.stop({ t: graceSeconds }).catch(gone);
  await container.remove({ force: true }).catch(gone);
  if (running) ctx.log?.('agent container stopped', { taskId, container: nameOrId });
  return running;
}

async function removeVolume(name: string): Promise<void> {
  try {
    await dockerClient().getVolume(name).remove();
  } catch (error) {
    if (dockerStatus(error) !== 404) throw error;
  }
}
