import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoAgent, eventually, getJson, processesOfTask, useHarness } from '../test/harness.ts';
import { commandDriver, DriverError } from './index.ts';

const h = useHarness();

/**
 * Starts the demo agent in the background on a free port, as a script for a container or VM would:
 * once it listens, or again on another port if it failed first (its port taken meanwhile).
 */
const startDemo = `
for try in 1 2 3; do
  port=$("$NODE" -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
  PORT=$port "$NODE" "$DEMO_AGENT" > agent.log 2>&1 &
  echo $! > agent.pid
  until grep -qE 'listening|Error' agent.log; do sleep 0.05; done
  grep -q listening agent.log && break
done
echo "started the demo agent on port $port"
printf '{"agentUrl": "http://127.0.0.1:%s", "port": %s}\\n\\n' "$port" "$port"
`;
const demo = {
  start: startDemo,
  stop: 'kill "$(cat agent.pid)"',
  env: { NODE: process.execPath, DEMO_AGENT: demoAgent },
};

const run = (transition: 'start' | 'stop' | 'delete', settings: object, overrides = {}) =>
  commandDriver.run(h.spec({ transition, settings, ...overrides }), h.ctx);

describe('command driver', () => {
  it('starts with the start command, whose last line gives the agentUrl, and stops with the stop command', async () => {
    const outputs = await run('start', demo);
    expect(outputs).toEqual({
      agentUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      port: expect.any(Number),
    });
    await eventually(async () =>
      expect(await getJson(`${outputs.agentUrl}/status`)).toEqual({ status: 'stable', agent_type: 'demo' }),
    );
    expect(await processesOfTask(h.taskId)).toHaveLength(1);

    expect(await run('stop', demo)).toEqual({});
    await eventually(async () => expect(await processesOfTask(h.taskId)).toEqual([]));
  });

  it('gives its commands the task, the build, the parameters and the template env, in the task directory', async () => {
    const printEnv = `"$NODE" -e '
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("HIATUS_") || k === "CUSTOM"));
      console.log(JSON.stringify({ agentUrl: "http://127.0.0.1:9", env, cwd: process.cwd() }));'`;
    const spec = h.spec({
      settings: {
        start: printEnv,
        stop: 'true',
        env: { NODE: process.execPath, CUSTOM: 'yes', HIATUS_TASK_ID: 'spoofed' },
      },
      reason: 'task_resume',
      prompt: 'write a haiku',
      parameters: { 'repo-url': 'https://example.com/r.git', model: 'opus' },
      previousOutputs: { agentUrl: 'http://127.0.0.1:8' },
    });
    const outputs = await commandDriver.run(spec, h.ctx);
    expect(outputs).toEqual({
      agentUrl: 'http://127.0.0.1:9',
      cwd: join(h.dataDir, 'workspaces', h.taskId),
      env: {
        CUSTOM: 'yes',
        HIATUS_TASK_ID: h.taskId,
        HIATUS_WORKSPACE_ID: spec.workspaceId,
        HIATUS_BUILD_ID: spec.buildId,
        HIATUS_TRANSITION: 'start',
        HIATUS_REASON: 'task_resume',
        HIATUS_PROMPT: 'write a haiku',
        HIATUS_PARAMETERS: JSON.stringify(spec.parameters),
        HIATUS_PARAM_REPO_URL: 'https://example.com/r.git',
        HIATUS_PARAM_MODEL: 'opus',
        HIATUS_PREVIOUS_AGENT_URL: 'http://127.0.0.1:8',
        HIATUS_START: 'resume',
      },
    });
  });

  it('tells a first start it is one; a resume runs resume.command with its previous conversation in a 0600 file', async () => {
    const printStart = `"$NODE" -e '
      const file = process.env.HIATUS_PREVIOUS_CONVERSATION;
      const conversation = file ? JSON.parse(require("fs").readFileSync(file, "utf8")) : null;
      console.log(JSON.stringify({ agentUrl: "http://127.0.0.1:9", ran: process.argv[1], start: process.env.HIATUS_START, file, conversation }));' `;
    const settings = { start: `${printStart}start`, stop: 'true', env: { NODE: process.execPath } };
    const resume = { command: `${printStart}resume` };
    expect(await commandDriver.run(h.spec({ start: 'first', resume, settings }), h.ctx)).toEqual({
      agentUrl: 'http://127.0.0.1:9',
      ran: 'start',
      start: 'first',
      conversation: null,
    });
    const previousConversation = [
      { id: 0, role: 'user' as const, content: 'fix the build', time: '2026-06-03T13:08:25Z' },
      { id: 1, role: 'agent' as const, content: 'Reading the failing test…', time: '2026-06-03T13:08:26Z' },
    ];
    const file = join(h.dataDir, 'conversations', `${h.taskId}.json`);
    const resumeSpec = { reason: 'task_resume', start: 'resume' as const, resume, previousConversation, settings };
    expect(await commandDriver.run(h.spec(resumeSpec), h.ctx)).toEqual({
      agentUrl: 'http://127.0.0.1:9',
      ran: 'resume',
      start: 'resume',
      file,
      conversation: previousConversation,
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // Without resume.command, a resume runs the start command, told it resumes.
    expect(await commandDriver.run(h.spec({ ...resumeSpec, resume: null }), h.ctx)).toMatchObject({
      ran: 'start',
      start: 'resume',
      file,
    });
    // A failing resume command is named as such.
    await expect(
      commandDriver.run(
        h.spec({ ...resumeSpec, resume: { command: 'echo "no session to continue" >&2; exit 4' } }),
        h.ctx,
      ),
    ).rejects.toThrow('the resume command exited with code 4: no session to continue');
    expect(await run('delete', settings)).toEqual({});
    expect(existsSync(file)).toBe(false);
    expect(commandDriver.resumeCommandSchema.safeParse(['claude', '--continue']).success).toBe(false);
  });

  it('keeps the provisioner’s own secrets from its commands', async () => {
    const saved = { db: process.env.DATABASE_URL, admin: process.env.HIATUS_ADMIN_TOKEN };
    process.env.DATABASE_URL = 'postgres://hiatus:secret@db/hiatus';
    process.env.HIATUS_ADMIN_TOKEN = 'the-admin-key-0123456789abcdefghij';
    try {
      const printSecrets = `"$NODE" -e '
        const seen = ["DATABASE_URL", "HIATUS_ADMIN_TOKEN"].filter((k) => k in process.env);
        console.log(JSON.stringify({ agentUrl: "http://127.0.0.1:9", seen }));'`;
      const spec = h.spec({ settings: { start: printSecrets, stop: 'true', env: { NODE: process.execPath } } });
      expect(await commandDriver.run(spec, h.ctx)).toEqual({ agentUrl: 'http://127.0.0.1:9', seen: [] });
    } finally {
      for (const [name, value] of [
        ['DATABASE_URL', saved.db],
        ['HIATUS_ADMIN_TOKEN', saved.admin],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it('fails with the tail of stderr when a command exits non-zero', async () => {
    const failing = { ...demo, stop: 'echo "Error: No such container: agent-1" >&2; exit 3' };
    const failure = run('stop', failing);
    await expect(failure).rejects.toThrow(DriverError);
    await expect(failure).rejects.toThrow('the stop command exited with code 3: Error: No such container: agent-1');
  });

  it('kills the whole group of a command that does not finish in time', async () => {
    const failure = run('start', { ...demo, start: 'sleep 30 & sleep 31; echo late', timeoutMs: 300 });
    await expect(failure).rejects.toThrow('the start command did not finish within 300 ms');
    expect(await processesOfTask(h.taskId)).toEqual([]);
  });

  it('kills the whole group of a command when the build is cancelled', async () => {
    const abort = new AbortController();
    // It could only end by the cancel: it sleeps far past its test, and has all the time it wants.
    const failure = commandDriver.run(h.spec({ settings: { ...demo, start: 'sleep 600', timeoutMs: 600_000 } }), {
      ...h.ctx,
      signal: abort.signal,
    });
    await eventually(async () => expect(await processesOfTask(h.taskId)).not.toEqual([]));
    abort.abort();
    await expect(failure).rejects.toThrow('the start command was cancelled');
    expect(await processesOfTask(h.taskId)).toEqual([]);
  });

  it.each([
    ['a log line last', `echo '{"agentUrl": "http://127.0.0.1:1"}'; sleep 30 & echo all done`, 'it printed: all done'],
    ['no agentUrl', `echo '{"url": "http://127.0.0.1:1"}'`, 'it printed: {"url": "http://127.0.0.1:1"}'],
    ['a URL that is not http', `echo '{"agentUrl": "ftp://127.0.0.1"}'`, 'it printed: {"agentUrl": "ftp://127.0.0.1"}'],
    ['nothing', 'echo "oops" >&2', 'it printed nothing: oops'],
  ])('refuses a start that prints %s as its last line, killing what it left', async (_, start, printed) => {
    const failure = run('start', { ...demo, start });
    await expect(failure).rejects.toThrow(
      `the start command must print a JSON object with an "agentUrl" (an http or https URL) as its last line; ${printed}`,
    );
    expect(await processesOfTask(h.taskId)).toEqual([]);
  });

  it('refuses a start whose JSON repeats a key: a parameter cannot smuggle in a second agentUrl', async () => {
    // A script that prints a parameter into its JSON as it is, as a hurried template would.
    const start = `sleep 30 & printf '{"agentUrl": "http://127.0.0.1:9", "note": "%s"}\\n' "$HIATUS_PARAM_NOTE"`;
    const smuggled = 'hi", "agentUrl": "http://203.0.113.7:80';
    const spec = h.spec({ settings: { ...demo, start }, parameters: { note: smuggled } });
    const failure = commandDriver.run(spec, h.ctx);
    await expect(failure).rejects.toThrow(DriverError);
    await expect(failure).rejects.toThrow(
      'the start command printed the key "agentUrl" twice in one object of its JSON: a key may appear once',
    );
    expect(await processesOfTask(h.taskId)).toEqual([]);

    // Escapes do not hide a repeat, nor does depth; the same key in two objects is no repeat.
    const escaped = `echo '{"agentUrl": "http://127.0.0.1:9", "agent\\u0055rl": "http://203.0.113.7"}'`;
    await expect(run('start', { ...demo, start: escaped })).rejects.toThrow('printed the key "agentUrl" twice');
    const nested = `echo '{"agentUrl": "http://127.0.0.1:9", "ports": [{"web": 1, "web": 2}]}'`;
    await expect(run('start', { ...demo, start: nested })).rejects.toThrow('printed the key "web" twice');
    const apart = `echo '{"agentUrl": "http://127.0.0.1:9", "a": {"port": 1}, "b": {"port": 2}}'`;
    expect(await run('start', { ...demo, start: apart })).toEqual({
      agentUrl: 'http://127.0.0.1:9',
      a: { port: 1 },
      b: { port: 2 },
    });
  });

  it('deletes with no delete command: nothing to run, the working directory goes', async () => {
    await run('start', demo);
    await run('stop', demo);
    expect(existsSync(join(h.dataDir, 'workspaces', h.taskId, 'agent.pid'))).toBe(true); // kept across a stop
    expect(await run('delete', demo)).toEqual({});
    expect(existsSync(join(h.dataDir, 'workspaces', h.taskId))).toBe(false);
    await expect(run('delete', { ...demo, delete: 'echo "cannot delete" >&2; false' })).rejects.toThrow(
      'the delete command exited with code 1: cannot delete',
    );
  });
});
