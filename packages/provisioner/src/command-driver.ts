import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { buildOutputDir, workspaceDir } from './data-dir.ts';
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
import { describeExit, type Exit, type GroupLeader, spawnGroup, stopGroup } from './process-group.ts';
import { removeConversationFile, taskEnv, writeConversationFile } from './task-env.ts';

export const commandSettingsSchema = z.strictObject({
  /** Must print `{"agentUrl": "http://..."}` as its last non-empty stdout line; other fields become outputs too. */
  start: z.string().min(1),
  stop: z.string().min(1),
  /** Optional: without it a delete only removes the task's working directory. */
  delete: z.string().min(1).optional(),
  timeoutMs: z.number().int().positive().default(defaults.commandTimeoutMs),
  env: z.record(z.string(), z.string()).optional(),
});
export type CommandSettings = z.infer<typeof commandSettingsSchema>;

const startOutputSchema = z.looseObject({ agentUrl: z.url({ protocol: /^https?$/ }) });

/**
 * Runs the template's own shell commands for each transition, for workspaces Hiatus cannot start
 * itself (a container, a Kubernetes deployment, a VM). Each runs with `/bin/sh -c` in the task's
 * working directory, in its own process group, which is killed if the command fails or times out.
 */
export const commandDriver = {
  name: 'command',
  settingsSchema: commandSettingsSchema,
  /** A resume may run its own shell command in place of `start`, held to the same output rule. */
  resumeCommandSchema: z.string().min(1),

  async run(spec: BuildSpec, ctx: DriverContext): Promise<BuildOutputs> {
    const settings = parseSettings('command', commandSettingsSchema, spec.settings);
    const cwd = workspaceDir(ctx.dataDir, spec.taskId);
    const resumeCommand = startOf(spec) === 'resume' ? spec.resume?.command : undefined;
    if (Array.isArray(resumeCommand)) throw new DriverError('the command driver takes resume.command as a string');
    const command = resumeCommand || settings[spec.transition];
    let outputs: BuildOutputs = {};
    if (command) {
      await mkdir(cwd, { recursive: true });
      const conversationFile = spec.transition === 'start' ? await writeConversationFile(spec, ctx.dataDir) : undefined;
      outputs = await runCommand(command, spec, settings, cwd, ctx, conversationFile);
    }
    if (spec.transition === 'delete') {
      await rm(cwd, { recursive: true, force: true });
      await removeConversationFile(ctx.dataDir, spec.taskId);
    }
    return outputs;
  },
} satisfies Driver;

async function runCommand(
  command: string,
  spec: BuildSpec,
  settings: CommandSettings,
  cwd: string,
  ctx: DriverContext,
  conversationFile: string | undefined,
): Promise<BuildOutputs> {
  await mkdir(buildOutputDir(ctx.dataDir), { recursive: true });
  const outputDir = await mkdtemp(join(buildOutputDir(ctx.dataDir), `${spec.transition}-`));
  const stdoutFile = join(outputDir, 'stdout');
  const stderrFile = join(outputDir, 'stderr');
  try {
    const [stdout, stderr] = await Promise.all([open(stdoutFile, 'w'), open(stderrFile, 'w')]);
    let leader: GroupLeader;
    try {
      const env = taskEnv(spec, settings.env, conversationFile);
      leader = spawnGroup(command, { cwd, env, stdout: stdout.fd, stderr: stderr.fd });
    } finally {
      await Promise.all([stdout.close(), stderr.close()]); // the child holds its own copies
    }
    const name =
      startOf(spec) === 'resume' && spec.resume?.command ? 'the resume command' : `the ${spec.transition} command`;
    const end = await endOf(leader.exit, settings.timeoutMs, ctx.signal);
    let why: string;
    if (end === 'timeout') why = `${name} did not finish within ${settings.timeoutMs} ms`;
    else if (end === 'cancelled') why = `${name} was cancelled`;
    else if ('error' in end || end.code !== 0) why = `${name} ${describeExit(end, command)}`;
    else if (spec.transition !== 'start') return {};
    else {
      const lastLine = lastNonEmptyLine(await readTail(stdoutFile, 0, defaults.startOutputBytes));
      const outputs = parseStartOutput(lastLine);
      if (typeof outputs !== 'string') return outputs;
      why = `${name} must print a JSON object with an "agentUrl" (an http or https URL) as its last line; ${outputs}`;
    }
    // Whatever the failed command left running in its group goes with it.
    if (leader.pid !== undefined) await stopGroup(leader.pid, defaults.stopGraceMs);
    throw new DriverError(why, { output: await readTail(stderrFile) });
  } finally {
    await rm(outputDir, { recursive: true, force: true });
  }
}

/** Waits for the command to end, for at most `timeoutMs`, or until the build is cancelled. */
function endOf(exit: Promise<Exit>, timeoutMs: number, signal?: AbortSignal): Promise<Exit | 'timeout' | 'cancelled'> {
  return new Promise((resolve) => {
    const finish = (end: Exit | 'timeout' | 'cancelled') => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cancel);
      resolve(end);
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    const cancel = () => finish('cancelled');
    if (signal?.aborted) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    void exit.then(finish);
  });
}

function lastNonEmptyLine(text: string): string | undefined {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .findLast((line) => line !== '');
}

/** The outputs a start printed, or why they are not acceptable. */
function parseStartOutput(line: string | undefined): BuildOutputs | string {
  if (line === undefined) return 'it printed nothing';
  const shown = line.length > 200 ? `${line.slice(0, 200)}…` : line;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return `it printed: ${shown}`;
  }
  const result = startOutputSchema.safeParse(value);
  return result.success ? result.data : `it printed: ${shown}`;
}
