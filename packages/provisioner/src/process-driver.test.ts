import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  demoAgent,
  environOf,
  eventually,
  getJson,
  groupMembers,
  portThief,
  postMessage,
  processesOfTask,
  sh,
  useHarness,
} from '../test/harness.ts';
import { type ConversationMessage, DriverError, processDriver } from './index.ts';

const h = useHarness();
const node = process.execPath;
const demo = { command: [node, demoAgent], env: { DEMO_WORK_MS: '100' } };

const pidFile = (taskId = h.taskId) => join(h.dataDir, 'pids', `${taskId}.json`);
const workspace = (taskId = h.taskId) => join(h.dataDir, 'workspaces', taskId);
const agentLog = (taskId = h.taskId) => join(h.dataDir, 'logs', `${taskId}.log`);

async function start(settings: object, taskId = h.taskId): Promise<{ agentUrl: string; pid: number }> {
  const outputs = await processDriver.run(h.spec({ taskId, settings }), h.ctx);
  return outputs as { agentUrl: string; pid: number };
}

describe('process driver', () => {
  it('starts the demo agent, which answers; a stop ends its whole group; a new start works', async () => {
    // The agent beside an idle grandchild: a stop must take both.
    const command = `${sh(node)} ${sh(demoAgent)} & ${sh(node)} -e 'setInterval(() => {}, 1000)' & wait`;
    const { agentUrl, pid } = await start({ ...demo, command });
    expect(agentUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await getJson(`${agentUrl}/status`)).toEqual({ status: 'stable', agent_type: 'demo' });
    expect(await groupMembers(pid)).toHaveLength(3); // the shell and its two children
    expect(JSON.parse(await readFile(pidFile(), 'utf8'))).toMatchObject({
      pid,
      pgid: pid,
      port: Number(new URL(agentUrl).port),
    });

    expect((await postMessage(agentUrl, 'fix the flaky test')).status).toBe(200);
    await eventually(async () =>
      expect(await getJson(`${agentUrl}/messages`)).toMatchObject({
        messages: [
          { id: 0, role: 'user', content: 'fix the flaky test' },
          { id: 1, role: 'agent', content: 'Done: "fix the flaky test"' },
        ],
      }),
    );

    expect(await processDriver.run(h.spec({ transition: 'stop', settings: demo }), h.ctx)).toEqual({});
    expect(await groupMembers(pid)).toEqual([]);
    expect(await processesOfTask(h.taskId)).toEqual([]);
    expect(existsSync(pidFile())).toBe(false);
    expect(existsSync(workspace())).toBe(true); // kept for the resume

    const again = await start(demo);
    expect(await getJson(`${again.agentUrl}/status`)).toEqual({ status: 'stable', agent_type: 'demo' });
    expect(await getJson(`${again.agentUrl}/messages`)).toEqual({ messages: [] }); // a new process: history is Hiatus's job
  });

  it('gives the agent its port, task, prompt, parameters and the template env, and logs its output', async () => {
    const spec = h.spec({
      prompt: 'write a haiku',
      parameters: { 'repo-url': 'https://example.com/r.git', model: 'opus' },
      settings: { ...demo, env: { ...demo.env, CUSTOM: 'yes', HIATUS_TASK_ID: 'spoofed' } },
    });
    const { agentUrl, pid } = (await processDriver.run(spec, h.ctx)) as { agentUrl: string; pid: number };
    expect(await environOf(pid)).toMatchObject({
      PORT: new URL(agentUrl).port,
      HIATUS_TASK_ID: h.taskId,
      HIATUS_PROMPT: 'write a haiku',
      HIATUS_PARAM_REPO_URL: 'https://example.com/r.git',
      HIATUS_PARAM_MODEL: 'opus',
      CUSTOM: 'yes',
    });
    const { messages } = (await getJson(`${agentUrl}/messages`)) as { messages: unknown[] };
    expect(messages[0]).toMatchObject({ id: 0, role: 'user', content: 'write a haiku' });
    const log = await readFile(agentLog(), 'utf8');
    expect(log).toContain(`demo agent listening on ${agentUrl}`);
  });

  it.each([
    [
      'a command that is not found',
      'no-such-agent --port "$PORT"',
      /exited with code 127 \(command not found\) before answering: .*no-such-agent: not found/,
    ],
    ['a program that is not found', ['no-such-agent'], /could not start: no-such-agent was not found/],
    [
      'a command that fails',
      'echo "ANTHROPIC_API_KEY is not set" >&2; exit 1',
      /exited with code 1 before answering: ANTHROPIC_API_KEY is not set$/,
    ],
    [
      'a command that never answers',
      'sleep 30 & sleep 31 & wait',
      /did not answer GET \/status within 300 ms \(last try: connection refused\)/,
    ],
  ])('fails with a readable error and leaves nothing behind: %s', async (_, command, message) => {
    const failure = start({ command, startTimeoutMs: 300 });
    await expect(failure).rejects.toThrow(DriverError);
    await expect(failure).rejects.toThrow(message);
    expect(await processesOfTask(h.taskId)).toEqual([]);
    expect(existsSync(pidFile())).toBe(false);
  });

  it('says so when the environment is too large for the kernel (a very long prompt)', async () => {
    const failure = processDriver.run(h.spec({ prompt: 'x'.repeat(200_000), settings: demo }), h.ctx);
    await expect(failure).rejects.toThrow('the agent command could not start: its environment is too large');
    expect(existsSync(pidFile())).toBe(false);
  });

  it('gives up when the build is cancelled, leaving nothing behind', async () => {
    const abort = new AbortController();
    // It could only end by the cancel: never answers, and is given all the time it wants.
    const failure = processDriver.run(h.spec({ settings: { command: 'sleep 600', startTimeoutMs: 600_000 } }), {
      ...h.ctx,
      signal: abort.signal,
    });
    await eventually(async () => expect(await processesOfTask(h.taskId)).not.toEqual([]));
    abort.abort();
    await expect(failure).rejects.toThrow('the start was cancelled before the agent answered');
    expect(await processesOfTask(h.taskId)).toEqual([]);
    expect(existsSync(pidFile())).toBe(false);
  });

  it('tells a first start it is one; hands a resume its previous conversation in a 0600 file; a delete removes it', async () => {
    const conversationFile = join(h.dataDir, 'conversations', `${h.taskId}.json`);
    const first = (await processDriver.run(
      h.spec({ prompt: 'list the files', start: 'first', settings: demo }),
      h.ctx,
    )) as {
      agentUrl: string;
      pid: number;
    };
    const firstEnv = await environOf(first.pid);
    expect(firstEnv.HIATUS_START).toBe('first');
    expect(firstEnv).not.toHaveProperty('HIATUS_PREVIOUS_CONVERSATION');
    expect(existsSync(conversationFile)).toBe(false);
    await processDriver.run(h.spec({ transition: 'stop', settings: demo }), h.ctx);

    const previousConversation: ConversationMessage[] = [
      { id: 0, role: 'user', content: 'list the files', time: '2026-06-03T13:08:25.123Z' },
      { id: 1, role: 'agent', content: 'Done: "list the files"', time: '2026-06-03T13:08:26Z' },
      { id: 2, role: 'user', content: 'message BRAVO', time: '2026-06-03T13:09:00Z' },
      { id: 3, role: 'agent', content: 'Done: "message BRAVO"\nwith ünïcode', time: '2026-06-03T13:09:01Z' },
    ];
    const resumed = (await processDriver.run(
      h.spec({
        reason: 'task_resume',
        prompt: 'list the files',
        start: 'resume',
        previousConversation,
        settings: demo,
      }),
      h.ctx,
    )) as { agentUrl: string; pid: number };
    const env = await environOf(resumed.pid);
    expect(env.HIATUS_START).toBe('resume');
    expect(env.HIATUS_PREVIOUS_CONVERSATION).toBe(conversationFile);
    expect(JSON.parse(await readFile(conversationFile, 'utf8'))).toEqual(previousConversation);
    expect((await stat(conversationFile)).mode & 0o777).toBe(0o600);
    // The demo agent does not start the task over: its first answer says what it was given.
    expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
      messages: [
        {
          id: 0,
          role: 'agent',
          content: 'Resumed: I was given 4 earlier messages (the last you sent: "message BRAVO").',
        },
      ],
    });
    expect(await getJson(`${resumed.agentUrl}/status`)).toMatchObject({ status: 'stable' });

    // A later first start of that task id finds no conversation of an earlier life; a delete removes it too.
    await processDriver.run(h.spec({ start: 'resume', previousConversation: [], settings: demo }), h.ctx);
    expect(JSON.parse(await readFile(conversationFile, 'utf8'))).toEqual([]);
    await processDriver.run(h.spec({ start: 'first', settings: demo }), h.ctx);
    expect(existsSync(conversationFile)).toBe(false);
    await processDriver.run(h.spec({ start: 'resume', previousConversation, settings: demo }), h.ctx);
    await processDriver.run(h.spec({ transition: 'delete', settings: demo }), h.ctx);
    expect(existsSync(conversationFile)).toBe(false);
  });

  it("runs the template's resume command on a resume, and the first start's command otherwise", async () => {
    const resume = { command: `RESUMED_WITH=resume-command exec ${sh(node)} ${sh(demoAgent)}` };
    const first = (await processDriver.run(h.spec({ start: 'first', resume, settings: demo }), h.ctx)) as {
      pid: number;
    };
    expect(await environOf(first.pid)).not.toHaveProperty('RESUMED_WITH');
    const resumed = (await processDriver.run(
      h.spec({ reason: 'task_resume', start: 'resume', resume, previousConversation: [], settings: demo }),
      h.ctx,
    )) as { agentUrl: string; pid: number };
    expect(await environOf(resumed.pid)).toMatchObject({ RESUMED_WITH: 'resume-command', HIATUS_START: 'resume' });
    expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
      messages: [{ role: 'agent', content: 'Resumed: I was given 0 earlier messages.' }],
    });
    // Without a resume command, a resume runs the first start's.
    const plain = (await processDriver.run(
      h.spec({ start: 'resume', previousConversation: [], settings: demo }),
      h.ctx,
    )) as {
      pid: number;
    };
    expect(await environOf(plain.pid)).not.toHaveProperty('RESUMED_WITH');
    expect(processDriver.resumeCommandSchema.safeParse(['claude', '--continue']).success).toBe(true);
    expect(processDriver.resumeCommandSchema.safeParse('').success).toBe(false);
  });

  it('stops a copy that still runs before starting another', async () => {
    const first = await start(demo);
    const second = await start(demo);
    expect(await groupMembers(first.pid)).toEqual([]);
    expect(await processesOfTask(h.taskId)).toEqual([second.pid]);
  });

  it('stops or deletes a task with nothing running; a delete removes the working directory', async () => {
    expect(await processDriver.run(h.spec({ transition: 'stop', settings: demo }), h.ctx)).toEqual({});
    const { pid } = await start(demo);
    expect(await processDriver.run(h.spec({ transition: 'delete', settings: demo }), h.ctx)).toEqual({});
    expect(await groupMembers(pid)).toEqual([]);
    expect(existsSync(workspace())).toBe(false);
    expect(await processDriver.run(h.spec({ transition: 'delete', settings: demo }), h.ctx)).toEqual({});
  });

  it('starts the agent again on another port when its port was taken before it could listen', async () => {
    const marker = join(workspace(), 'thief'); // where the agent (maybe another user) may write
    const settings = { command: [node, portThief], env: { THIEF_MARKER: marker, DEMO_AGENT: demoAgent } };
    const { agentUrl, pid } = await start(settings);
    // The first start's port was the thief's; the agent answers on another.
    const log = await readFile(agentLog(), 'utf8');
    const takenPort = /EADDRINUSE: address already in use 127\.0\.0\.1:(\d+)/.exec(log)?.[1];
    expect(takenPort).toBeDefined();
    expect(new URL(agentUrl).port).not.toBe(takenPort);
    expect(await getJson(`${agentUrl}/status`)).toEqual({ status: 'stable', agent_type: 'demo' });
    expect(log).toContain(`demo agent listening on ${agentUrl}`);
    // The thief, in a session of its own, was the failed start's: its stop ended it too.
    const thief = Number(await readFile(marker, 'utf8'));
    expect(await processesOfTask(h.taskId)).toEqual([pid]);
    expect(existsSync(`/proc/${thief}/environ`) && (await groupMembers(thief)).length).toBeFalsy();
  });

  it('tries a start whose port is always taken three times, then fails with what the agent said', async () => {
    const command = 'echo "Error: listen EADDRINUSE: address already in use 127.0.0.1:$PORT" >&2; exit 1';
    const failure = start({ command });
    await expect(failure).rejects.toThrow(/exited with code 1 before answering: Error: listen EADDRINUSE/);
    const log = await readFile(agentLog(), 'utf8');
    expect(log.match(/EADDRINUSE/g)).toHaveLength(3);
    expect(await processesOfTask(h.taskId)).toEqual([]);
    expect(existsSync(pidFile())).toBe(false);
  });

  it('kills an agent ignoring SIGTERM once stopGraceMs has passed', async () => {
    // The shell and its sleeps inherit the ignored SIGTERM; only SIGKILL ends them.
    const command = `trap '' TERM; ${sh(node)} ${sh(demoAgent)} & while :; do sleep 0.1; done`;
    const stubborn = { command, stopGraceMs: 300 };
    const { pid } = await start(stubborn);
    const stopping = Date.now();
    await processDriver.run(h.spec({ transition: 'stop', settings: stubborn }), h.ctx);
    // A floor set by the driver's own timer (SIGKILL comes no sooner), which load only lengthens.
    expect(Date.now() - stopping).toBeGreaterThanOrEqual(300);
    expect(await groupMembers(pid)).toEqual([]);
  });

  it('refuses settings that are not its own', async () => {
    await expect(start({ command: '' })).rejects.toThrow(/^invalid process driver settings: command/);
    await expect(start({ comand: 'agentapi server' })).rejects.toThrow(/Unrecognized key: "comand"/);
  });

  it('reconciles: stops the agents of tasks that should not run, forgets the dead ones', async () => {
    const keep = h.taskId;
    const drop = h.newTaskId();
    const dead = h.newTaskId();
    const kept = await start(demo, keep);
    const dropped = await start(demo, drop);
    const gone = await start(demo, dead);
    process.kill(-gone.pid, 'SIGKILL'); // dies behind the provisioner's back
    await eventually(async () => expect(await processesOfTask(dead)).toEqual([]));

    expect(await processDriver.reconcile((taskId) => taskId !== drop, h.ctx)).toEqual([drop]);
    expect(await groupMembers(dropped.pid)).toEqual([]);
    expect(await groupMembers(kept.pid)).toEqual([kept.pid]);
    expect(await groupMembers(gone.pid)).toEqual([]);
    expect(existsSync(pidFile(keep))).toBe(true);
    expect(existsSync(pidFile(drop))).toBe(false);
    expect(existsSync(pidFile(dead))).toBe(false);
  });
});
