import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
// jsonc-parser (Microsoft's, VS Code's JSON scanner: maintained, no dependencies) reports every
// property key unescaped, so `"agent\u0055rl"` counts as the `agentUrl` it is: JSON.parse alone
// keeps the last of two keys silently, and a hand-written scanner would have to get escapes right.
import { visit } from 'jsonc-parser';
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
      if ('outputs' in outputs) return outputs.outputs;
      why =
        'repeated' in outputs
          ? `${name} printed the key ${outputs.repeated} twice in one object of its JSON: a key may appear once (the last would win, so a value the command prints could override the agentUrl)`
          : `${name} must print a JSON object with an "agentUrl" (an http or https URL) as its last line; ${outputs.wrong}`;
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

/**
 * The outputs a start printed; or what is wrong with them: a key repeated in one object (shown as
 * JSON), or anything else, in words.
 */
function parseStartOutput(
  line: string | undefined,
): { outputs: BuildOutputs } | { repeated: string } | { wrong: string } {
  if (line === undefined) return { wrong: 'it printed nothing' };
  const shown = line.length > 200 ? `${line.slice(0, 200)}…` : line;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { wrong: `it printed: ${shown}` };
  }
  const repeated = repeatedKey(line);
  if (repeated !== null) {
    const key = JSON.stringify(repeated);
    return { repeated: key.length > 100 ? `${key.slice(0, 100)}…` : key };
  }
  const result = startOutputSchema.safeParse(value);
  return result.success ? { outputs: result.data } : { wrong: `it printed: ${shown}` };
}

/**
 * The first key that one object of `json` (valid JSON) holds twice, at any depth, or null.
 * Keys are compared as JSON.parse would see them, escapes decoded.
 */
function repeatedKey(json: string): string | null {
  const objects: Set<string>[] = []; // the keys of each object open around the scanner, innermost last
  let repeated: string | null = null;
  visit(json, {
    onObjectBegin: () => {
      objects.push(new Set());
    },
    onObjectEnd: () => {
      objects.pop();
    },
    onObjectProperty: (key) => {
      const keys = objects.at(-1);
      if (keys?.has(key)) repeated ??= key;
      keys?.add(key);
    },
  });
  return repeated;
}
