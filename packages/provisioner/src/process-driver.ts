import { open, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';
import { waitForAgent } from './agent-status.ts';
import { releaseTaskUid } from './agent-uids.ts';
import { type AgentUser, agentUserOf, checkAgentReach, filesNamed } from './agent-user.ts';
import { agentLogPath, folder, makeWorkspace, workspaceDir } from './data-dir.ts';
import { defaults } from './defaults.ts';
import {
  type BuildOutputs,
  type BuildSpec,
  type Driver,
  type DriverContext,
  DriverError,
  parseSettings,
  startOf,
} from './driver.ts';
import { readTail } from './output-tail.ts';
import { listPidFiles, processIdentity, readPidFile, removePidFile, stillRunning, writePidFile } from './pid-files.ts';
import { type CommandLine, describeExit, type Exit, type GroupLeader, spawnGroup } from './process-group.ts';
import {
  cgroupFor,
  cgroupPopulated,
  listTaskCgroups,
  makeTaskCgroup,
  spawnInCgroup,
  stopTree,
} from './process-tree.ts';
import { removeConversationFile, taskEnv, writeConversationFile } from './task-env.ts';

/** Run with `/bin/sh -c` when a string, as an argv when an array. */
const processCommandSchema = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const processSettingsSchema = z.strictObject({
  command: processCommandSchema,
  env: z.record(z.string(), z.string()).optional(),
  startTimeoutMs: z.number().int().positive().default(defaults.startTimeoutMs),
  stopGraceMs: z.number().int().nonnegative().default(defaults.stopGraceMs),
});
export type ProcessSettings = z.infer<typeof processSettingsSchema>;

/**
 * Runs each task's agent as local processes listening on 127.0.0.1: the simplest real workspace,
 * for one machine and trusted agents. Where the provisioner is root, the agent runs as the agent
 * user (agent-user.ts), in its own cgroup (process-tree.ts). A stop kills everything the agent
 * started; the working directory stays for the resume.
 */
export const processDriver = {
  name: 'process',
  settingsSchema: processSettingsSchema,
  /** A resume may run its own command (`claude --continue` over the kept working directory), string or argv. */
  resumeCommandSchema: processCommandSchema,

  async run(spec: BuildSpec, ctx: DriverContext): Promise<BuildOutputs> {
    const settings = parseSettings('process', processSettingsSchema, spec.settings);
    if (spec.transition === 'start') return startAgent(spec, settings, ctx);
    await stopAgent(ctx, spec.taskId, settings.stopGraceMs);
    if (spec.transition === 'delete') {
      await rm(workspaceDir(ctx.dataDir, spec.taskId), { recursive: true, force: true });
      await rm(agentLogPath(ctx.dataDir, spec.taskId), { force: true });
      await removeConversationFile(ctx.dataDir, spec.taskId);
      await releaseTaskUid(ctx.dataDir, spec.taskId);
    }
    return {};
  },

  async reconcile(shouldRun, ctx): Promise<string[]> {
    // A cgroup without a pid file: a provisioner that died between the agent's spawn and its pid file.
    const taskIds = new Set([...(await listPidFiles(ctx.dataDir)), ...(await listTaskCgroups(ctx.dataDir))]);
    const stopped = await Promise.all(
      [...taskIds].map(async (taskId) => {
        const record = await readPidFile(ctx.dataDir, taskId);
        if (record && (await stillRunning(record, taskId)) && (await shouldRun(taskId))) return null;
        const wasRunning = await stopAgent(ctx, taskId, defaults.stopGraceMs); // no template at hand
        return wasRunning ? taskId : null;
      }),
    );
    return stopped.filter((taskId) => taskId !== null);
  },
} satisfies Driver;

/**
 * A port nobody listens on right now. Another process may take it before the agent does (any
 * listener, or an outgoing connection's local port): the agent then cannot listen, and
 * `startAgent` starts it again on a new port.
 */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new DriverError('could not pick a free port');
  return address.port;
}

/** Whether something on this machine holds `port` on loopback now. */
async function portTaken(port: number): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
  }
  await new Promise((resolve) => server.close(resolve));
  return false;
}

/** Starts an agent on a port picked for it; this many tries when the port is taken before it listens. */
const portAttempts = 3;
/** What an agent (Node.js, Python, Go…) says when the address it was given is taken. */
const addressInUse = /EADDRINUSE|address already in use/i;

async function startAgent(spec: BuildSpec, settings: ProcessSettings, ctx: DriverContext): Promise<BuildOutputs> {
  await stopAgent(ctx, spec.taskId, settings.stopGraceMs); // never two copies of one task
  // A resume runs the template's resume command when it has one.
  const command = (startOf(spec) === 'resume' && spec.resume?.command) || settings.command;
  const { user, explicit } = await agentUserOf(ctx.dataDir, spec.taskId);
  const cwd = await makeWorkspace(ctx.dataDir, spec.taskId, user ?? undefined);
  const runAs = user ? await reachable(user, explicit, cwd, command, settings, spec, ctx) : undefined;
  const conversationFile = await writeConversationFile(spec, ctx.dataDir, runAs?.user);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const started = await startAgentOn(port, spec, { ...settings, command }, ctx, conversationFile, runAs);
    if ('outputs' in started) return started.outputs;
    if (!started.portTaken || attempt === portAttempts) throw started.failure;
    ctx.log?.('agent port taken before the agent listened, starting it again on another', {
      taskId: spec.taskId,
      port,
    });
  }
}

/** The agent user an agent runs as, and its PATH: the folders of its environment's PATH it can search. */
type RunAs = { user: AgentUser; path: string | undefined };

/**
 * The agent user, when it can run the command (checked as that user); when it cannot, an error,
 * unless the user is only the default (HIATUS_AGENT_USER unset): then the agent runs as the
 * provisioner's own user, with a warning in the log.
 */
async function reachable(
  user: AgentUser,
  explicit: boolean,
  cwd: string,
  command: CommandLine,
  settings: ProcessSettings,
  spec: BuildSpec,
  ctx: DriverContext,
): Promise<RunAs | undefined> {
  const path = settings.env?.PATH ?? process.env.PATH; // what taskEnv gives the agent
  try {
    return { user, path: await checkAgentReach(user, cwd, filesNamed(command, path), path) };
  } catch (error) {
    if (explicit || !(error instanceof DriverError)) throw error;
    ctx.log?.(
      `warning: ${error.message}; the agent runs as the provisioner's own user instead, beside its secrets (set HIATUS_AGENT_USER to make this an error)`,
      { taskId: spec.taskId },
    );
    return undefined;
  }
}

/** Said once per process: why a stop finds an agent's processes by their environment, not a cgroup. */
let cgroupNoticeGiven = false;

/**
 * One start of the agent, on `port`. A failure says whether the port was taken: the agent exited
 * before answering, and said so or something else holds the port now (its own group is gone by then).
 */
async function startAgentOn(
  port: number,
  spec: BuildSpec,
  settings: ProcessSettings,
  ctx: DriverContext,
  conversationFile: string | undefined,
  runAs: RunAs | undefined,
): Promise<{ outputs: BuildOutputs } | { failure: DriverError; portTaken: boolean }> {
  const cwd = workspaceDir(ctx.dataDir, spec.taskId);
  const logFile = agentLogPath(ctx.dataDir, spec.taskId);
  await folder(dirname(logFile), 0o700);
  const agentUrl = `http://127.0.0.1:${port}`;

  const env: NodeJS.ProcessEnv = { ...taskEnv(spec, settings.env, conversationFile), PORT: String(port) };
  if (runAs) {
    // The provisioner's HOME is not the agent user's to write: the workspace is its home, unless the template says otherwise.
    env.HOME = settings.env?.HOME ?? cwd;
    if (runAs.path !== undefined) env.PATH = runAs.path;
  }
  const made = await makeTaskCgroup(ctx.dataDir, spec.taskId);
  const log = await open(logFile, 'a', 0o600);
  let from: number;
  let leader: GroupLeader;
  let cgroup: { cgroup?: string; missing?: string };
  try {
    await log.chmod(0o600); // a log an older release left readable
    from = (await log.stat()).size; // this run's output starts here, for the error's tail
    ({ spawned: leader, ...cgroup } = spawnInCgroup(made.path, () =>
      spawnGroup(settings.command, {
        cwd,
        env,
        stdout: log.fd,
        stderr: log.fd,
        uid: runAs?.user.uid,
        gid: runAs?.user.gid,
      }),
    ));
  } finally {
    await log.close(); // the child holds its own copy
  }
  const missing = made.missing ?? cgroup.missing;
  if (missing && !cgroupNoticeGiven) {
    cgroupNoticeGiven = true;
    ctx.log?.(`agents' processes are found by their HIATUS_TASK_ID at a stop, not by a cgroup: ${missing}`);
  }
  const pgid = leader.pid;
  const tree = { pgid: pgid ?? 0, cgroup: cgroup.cgroup, taskId: spec.taskId };
  if (pgid === undefined) {
    const why = `the agent command ${describeExit(await leader.exit, settings.command)}`;
    if (made.path) await stopTree({ ...tree, cgroup: made.path }, 0);
    return { failure: new DriverError(why), portTaken: false };
  }

  let exited: Exit | undefined;
  const exitSeen = new AbortController();
  void leader.exit.then((result) => {
    exited = result;
    exitSeen.abort();
  });
  let why: string;
  try {
    await writePidFile(ctx.dataDir, spec.taskId, {
      pid: pgid,
      pgid,
      port,
      startedAt: new Date().toISOString(),
      ...(await processIdentity(pgid)),
      ...(cgroup.cgroup ? { cgroup: cgroup.cgroup } : {}),
    });
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, exitSeen.signal]) : exitSeen.signal;
    const wait = await waitForAgent(agentUrl, settings.startTimeoutMs, signal);
    if (wait.ready) {
      leader.unref(); // the agent outlives this build, and may outlive the provisioner
      ctx.log?.('agent started', { taskId: spec.taskId, pid: pgid, agentUrl });
      return { outputs: { agentUrl, pid: pgid } };
    }
    why = exited
      ? `the agent command ${describeExit(exited, settings.command)} before answering`
      : ctx.signal?.aborted
        ? 'the start was cancelled before the agent answered'
        : `the agent did not answer GET /status within ${settings.startTimeoutMs} ms (last try: ${wait.lastTry})`;
  } catch (error) {
    why = `the agent could not be started: ${(error as Error).message}`;
  }
  await stopTree(tree, settings.stopGraceMs);
  await removePidFile(ctx.dataDir, spec.taskId);
  const output = await readTail(logFile, from);
  const taken = exited !== undefined && !ctx.signal?.aborted && (addressInUse.test(output) || (await portTaken(port)));
  return { failure: new DriverError(why, { output }), portTaken: taken };
}

/**
 * Stops the task's agent if anything of it runs, and forgets it; true when there was something to
 * stop. The task's cgroup is looked at even without a pid file (a crash between the two).
 */
async function stopAgent(ctx: DriverContext, taskId: string, graceMs: number): Promise<boolean> {
  const record = await readPidFile(ctx.dataDir, taskId);
  const cgroup = record ? record.cgroup : cgroupFor(ctx.dataDir, taskId);
  const running =
    record !== null ? await stillRunning(record, taskId) : cgroup !== undefined && (await cgroupPopulated(cgroup));
  if (running || cgroup) await stopTree({ pgid: record?.pgid ?? 0, cgroup, taskId }, graceMs);
  if (running) ctx.log?.('agent stopped', { taskId, pid: record?.pid });
  await removePidFile(ctx.dataDir, taskId);
  return running;
}
