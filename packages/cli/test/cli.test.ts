import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { repoRoot } from '../../../apps/server/src/config.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { FakeAgent } from '../../../apps/server/test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../../apps/server/test/test-server.ts';
import { createHiatusClient, type HiatusClient } from '../../client/src/index.ts';

const cliDir = path.join(repoRoot, 'packages/cli');
const bin = path.join(cliDir, 'dist/hiatus.mjs');
const exitCodes = { ok: 0, usage: 2, notFound: 3, conflict: 4, unauthorized: 5, unreachable: 6 };

type Run = { code: number | null; stdout: string; stderr: string };

/**
 * The built bin, run as a user runs it: a child process with its own config folder (`config`), no
 * HIATUS_URL or HIATUS_TOKEN unless given in `env`, and `input` on stdin (not a terminal).
 */
function hiatus(
  args: string[],
  options: { config: string; env?: Record<string, string>; input?: string },
): Promise<Run> {
  const { HIATUS_URL: _url, HIATUS_TOKEN: _token, ...env } = process.env;
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...env, XDG_CONFIG_HOME: options.config, ...options.env }, timeout: 120_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number | null) : 0, stdout, stderr }),
    );
    child.stdin?.end(options.input ?? '');
  });
}

/**
 * A loopback URL nothing answers on: port 2, where nothing listens on a test machine, which no
 * listen(0) of a test is given (the ephemeral range starts far above), and which fetch tries.
 */
const unreachableUrl = 'http://127.0.0.1:2';

// Each test runs the bin a dozen times or more, a fresh Node.js process each: minutes on a loaded 2-core machine.
describe('the hiatus command line, built and run against a live server', { timeout: 180_000 }, () => {
  let running: TestServer;
  let url: string;
  let agent: FakeAgent;
  let admin: HiatusClient;
  let config: string;
  const scratch: string[] = [];

  /** A fresh config folder, removed after the suite. */
  async function freshConfig(): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-cli-'));
    scratch.push(dir);
    return dir;
  }

  /** The bin as the user logged in by the first test (its saved credentials, nothing in the environment). */
  const asLoggedIn = (...args: string[]): Promise<Run> => hiatus(args, { config });
  /** Parses stdout of a successful `--json` run. */
  // biome-ignore lint/suspicious/noExplicitAny: the JSON of many commands, each checked by its assertions
  const json = async (...args: string[]): Promise<any> => {
    const run = await asLoggedIn(...args, '--json');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    return JSON.parse(run.stdout);
  };

  beforeAll(async () => {
    await promisify(execFile)(path.join(cliDir, 'node_modules/.bin/tsdown'), [], { cwd: cliDir });
    running = await startTestServer(postgresServerUrl() ? 'postgres' : 'pglite', { HIATUS_PROVISIONER_POLL_MS: '100' });
    url = running.server.url;
    admin = createHiatusClient({ url, token: testAdminToken });
    agent = await new FakeAgent().start();
    agent.say(6, 60);
    // Every test but the first runs as this logged-in admin (the first checks what login writes).
    config = await freshConfig();
    const login = await hiatus(['login', '--url', url, '--token', testAdminToken], { config });
    expect(login.code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await running?.close();
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  it('logs in: checks the key with the server, then saves it readable by the user alone', async () => {
    const forged = await freshConfig();
    const refused = await hiatus(['login', '--url', url, '--token', 'forged-key-0123456789abcdefghij'], {
      config: forged,
    });
    expect(refused.code).toBe(exitCodes.unauthorized);
    expect(refused.stderr).toMatch(/^hiatus: .+ \(UNAUTHORIZED\)\n$/);
    await expect(stat(path.join(forged, 'hiatus/config.json'))).rejects.toMatchObject({ code: 'ENOENT' });

    // The key piped in on stdin, as a script (or `hiatus login < key.txt`) gives it.
    const config = await freshConfig();
    const login = await hiatus(['login', '--url', `${url}/`], { config, input: `${testAdminToken}\n` });
    expect(login.stderr).toBe('');
    expect(login.code).toBe(0);
    const file = path.join(config, 'hiatus/config.json');
    expect(login.stdout).toContain(`logged in to ${url} as admin (admin`);
    expect(login.stdout).toContain(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ url, token: testAdminToken });

    const me = await hiatus(['whoami', '--json'], { config });
    expect(JSON.parse(me.stdout)).toMatchObject({ url, username: 'admin', role: 'admin' });
  });

  it('walks a task through create, pause, logs from the snapshot, resume, live logs, send and delete', async () => {
    const created = await json(
      'tasks',
      'create',
      'cli-walk',
      '--prompt',
      'Fix the flaky test',
      '--agent-url',
      agent.url,
      '--no-send-prompt', // the agent's conversation is the walk's own
      '--wait',
    );
    expect(created).toMatchObject({
      settled: true,
      task: { name: 'cli-walk', status: 'active' },
      build: { reason: 'initiator' },
    });
    const id: string = created.task.id;

    const list = await asLoggedIn('tasks', 'ls');
    expect(list.code).toBe(0);
    const [header, ...rows] = list.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID +NAME +STATUS +PAUSED SINCE +PAUSE REASON +IDLE TIMEOUT +CREATED$/);
    const row = rows.find((line) => line.startsWith(id));
    expect(row).toMatch(/ cli-walk +active +- +- +default +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    // Aligned: every row's status starts where the header's STATUS does.
    expect(row!.indexOf(' active') + 1).toBe(header!.indexOf('STATUS'));
    expect((await json('tasks', 'ls')).items.map((task: { id: string }) => task.id)).toContain(id);
    expect(await json('tasks', 'get', id)).toMatchObject({ id, status: 'active', agentUrl: agent.url });

    const paused = await json('tasks', 'pause', id);
    expect(paused).toMatchObject({
      settled: true,
      task: { id, status: 'paused' },
      build: { transition: 'stop', reason: 'task_manual_pause' },
      snapshot: { taken: true, messageCount: 6 },
    });
    const pausedRow = (await asLoggedIn('tasks', 'ls', '--status', 'paused')).stdout
      .split('\n')
      .find((line) => line.startsWith(id));
    expect(pausedRow).toMatch(/ paused +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\) +task_manual_pause +default /);
    const get = await asLoggedIn('tasks', 'get', id);
    expect(get.stdout).toMatch(/^status +paused$/m);
    expect(get.stdout).toMatch(/^pause reason +task_manual_pause$/m);

    // Paused: the log is the snapshot's, and the first line says so.
    const snapshotLog = await asLoggedIn('tasks', 'logs', id);
    expect(snapshotLog.code).toBe(0);
    const [marker, ...entries] = snapshotLog.stdout.trimEnd().split('\n');
    expect(marker).toMatch(/^-- from the snapshot taken at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ --$/);
    expect(entries).toHaveLength(6);
    expect(entries[0]).toMatch(/^\[2026-06-03 13:00:00Z\] input: message 0 x+$/);
    expect(entries[1]).toMatch(/^\[2026-06-03 13:00:01Z\] output: message 1 x+$/);
    const snapshotJson = await json('tasks', 'logs', id, '--page-size', '4');
    expect(snapshotJson).toMatchObject({ source: 'snapshot', notice: null });
    expect(snapshotJson.entries.map((entry: { id: number }) => entry.id)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Date(snapshotJson.snapshotAt).getTime()).toBe(new Date(paused.snapshot.createdAt).getTime());

    // Pausing a paused task is a conflict, reported in one line with its exit status.
    const again = await asLoggedIn('tasks', 'pause', id);
    expect(again.code).toBe(exitCodes.conflict);
    expect(again.stdout).toBe('');
    expect(again.stderr).toMatch(/^hiatus: .+ \(CONFLICT\)\n$/);

    const resumed = await json('tasks', 'resume', id);
    expect(resumed).toMatchObject({ settled: true, task: { status: 'active' }, build: { reason: 'task_resume' } });
    const liveLog = await asLoggedIn('tasks', 'logs', id);
    expect(liveLog.stdout.split('\n')[0]).toBe('-- live from the agent --');

    const sent = await json('tasks', 'send', id, 'Also', 'add a regression test');
    expect(sent).toMatchObject({ resumed: false, task: { id, status: 'active' } });
    expect(agent.received).toContain('Also add a regression test');
    const piped = await hiatus(['tasks', 'send', id, '-'], { config, input: 'from stdin\n' });
    expect(piped.stdout).toBe(`sent to cli-walk (${id})\n`);
    expect(agent.received).toContain('from stdin');

    const builds = await json('tasks', 'builds', id);
    expect(builds.items.map((build: { reason: string }) => build.reason)).toEqual([
      'task_resume',
      'task_manual_pause',
      'initiator',
    ]);
    const buildTable = await asLoggedIn('tasks', 'builds', id);
    expect(buildTable.stdout).toMatch(
      /^BUILD +TRANSITION +REASON +JOB +CREATED +COMPLETED +ERROR\n#3 +start +task_resume +succeeded /,
    );

    const deleted = await json('tasks', 'delete', id);
    expect(deleted).toMatchObject({ task: { id, status: 'deleted' }, build: { transition: 'delete' } });
    expect((await json('tasks', 'ls')).items.map((task: { id: string }) => task.id)).not.toContain(id);
  });

  it('follows a live log, switches to the snapshot when the task pauses, and back when it resumes', async () => {
    const followed = await new FakeAgent().start();
    const restarted = await new FakeAgent().start();
    followed.say(2, 30);
    const followers: ReturnType<typeof follow>[] = [];
    try {
      const { task } = await admin.tasks.create.mutate({
        name: 'cli-follow',
        prompt: 'p',
        agentUrl: followed.url,
        sendPrompt: false,
      });
      await waitFor(async () => (await admin.tasks.get.query({ id: task.id })).status === 'active');
      const human = follow(config, task.id);
      const lines = follow(config, task.id, '--json');
      followers.push(human, lines);
      const output = (): string => `human:\n${human.stdout}${human.stderr}\njson:\n${lines.stdout}${lines.stderr}`;

      await waitFor(() => human.stdout.includes('output: message 1') && lines.stdout.includes('"id":1'), output);
      expect(human.stdout.split('\n')[0]).toBe('-- live from the agent --');
      // A new message while following shows up live.
      followed.say(1, 30);
      await waitFor(() => human.stdout.includes('input: message 2') && lines.stdout.includes('"id":2'), output);

      await admin.tasks.pause.mutate({ id: task.id, wait: true });
      await waitFor(
        () => /^-- from the snapshot taken at .+ --$/m.test(human.stdout) && /"source":"snapshot"/.test(lines.stdout),
        output,
      );

      // Resumed on a workspace started afresh: a new agent, its messages counted from 0 again.
      restarted.say(1, 30);
      restarted.messages[0]!.content = 'a new conversation';
      await admin.tasks.update.mutate({ id: task.id, agentUrl: restarted.url });
      await admin.tasks.resume.mutate({ id: task.id, wait: true });
      await waitFor(
        () => human.stdout.includes('input: a new conversation') && lines.stdout.includes('a new conversation'),
        output,
      );

      for (const follower of followers) follower.child.kill('SIGTERM');
      expect(await human.exited).toBe(0);
      expect(await lines.exited).toBe(0);
      expect(human.stderr + lines.stderr).toBe('');
      const printed = human.stdout.trimEnd().split('\n');
      expect(printed.filter((line) => line.startsWith('--'))).toEqual([
        '-- live from the agent --',
        expect.stringMatching(/^-- from the snapshot taken at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ --$/),
        '-- live from the agent --',
        // The new agent's entries follow the first agent's, after a line at the boundary.
        expect.stringMatching(
          /^-- paused at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ; resumed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ with a new agent \(segment 2\) --$/,
        ),
      ]);
      // Each entry once: the snapshot adds only what the live log had not shown.
      expect(printed.filter((line) => line.startsWith('['))).toHaveLength(4);

      const events = lines.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line));
      const kinds = events.map((event) =>
        event.type === 'entry'
          ? `entry ${event.id}`
          : event.type === 'origin'
            ? `origin ${event.source}`
            : `status ${event.status}`,
      );
      // The status lines come from tasks.watch, in the order of the task's changes.
      expect(kinds.filter((kind) => !kind.startsWith('status'))).toEqual([
        'origin live',
        'entry 0',
        'entry 1',
        'entry 2',
        'origin snapshot',
        'origin live',
        'entry 0',
      ]);
      expect(kinds.filter((kind) => kind.startsWith('status'))).toEqual(
        expect.arrayContaining(['status active', 'status paused']),
      );
      expect(events.find((event) => event.type === 'origin' && event.source === 'snapshot').snapshotAt).toMatch(
        /^\d{4}-\d\d-\d\dT/,
      );
    } finally {
      for (const follower of followers) follower.child.kill('SIGKILL');
      await followed.stop();
      await restarted.stop();
    }
  });

  it("watches a task until it is deleted, and queues a message for a paused task's resume", async () => {
    const { task } = await admin.tasks.create.mutate({ name: 'cli-watch', prompt: 'p', agentUrl: agent.url });
    await waitFor(async () => (await admin.tasks.get.query({ id: task.id })).status === 'active');
    await admin.tasks.pause.mutate({ id: task.id, wait: true });

    const queued = await json('tasks', 'send', task.id, '--resume', 'wake up and go on');
    expect(queued).toMatchObject({ queued: true, resumed: true, messageId: expect.any(String) });
    await waitFor(() => agent.received.includes('wake up and go on'));
    const human = await asLoggedIn('tasks', 'send', task.id, 'and', 'then', 'this');
    expect(human.stdout).toBe(`sent to cli-watch (${task.id})\n`);

    const watcher = spawn(process.execPath, [bin, 'tasks', 'watch', task.id, '--json'], {
      env: { ...process.env, XDG_CONFIG_HOME: config, HIATUS_URL: '', HIATUS_TOKEN: '' },
    });
    let stdout = '';
    watcher.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    const exited = new Promise<number | null>((resolve) => watcher.on('exit', resolve));
    try {
      await waitFor(
        () => stdout.includes('"status":"active"'),
        () => stdout,
      );
      await admin.tasks.delete.mutate({ id: task.id });
      // The watch ends by itself once the task is deleted.
      expect(await exited).toBe(0);
      const statuses = stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line).status);
      expect(statuses[0]).toBe('active');
      expect(statuses.at(-1)).toBe('deleted');
    } finally {
      watcher.kill('SIGKILL');
    }
  });

  it('prints a long log whole through a pipe before it exits', async () => {
    const talkative = await new FakeAgent().start();
    talkative.say(400, 4000); // 1.6 MB of JSON: far more than a pipe holds
    try {
      const { task } = await admin.tasks.create.mutate({
        name: 'cli-long',
        prompt: 'p',
        agentUrl: talkative.url,
        sendPrompt: false,
      });
      await waitFor(async () => (await admin.tasks.get.query({ id: task.id })).status === 'active');
      const log = await json('tasks', 'logs', task.id, '--page-size', '1000');
      expect(log.source).toBe('live');
      expect(log.entries).toHaveLength(400);
      expect(log.entries.at(-1).content).toHaveLength(4000);
    } finally {
      await talkative.stop();
    }
  });

  it('exits by the kind of error, with one line on stderr', async () => {
    const missing = await asLoggedIn('tasks', 'get', '00000000-0000-4000-8000-000000000000');
    expect(missing).toMatchObject({ code: exitCodes.notFound, stdout: '' });
    expect(missing.stderr).toMatch(/^hiatus: .+ \(NOT_FOUND\)\n$/);

    const forged = await hiatus(['tasks', 'ls'], { config, env: { HIATUS_TOKEN: 'forged-key-0123456789abcdefghij' } });
    expect(forged.code).toBe(exitCodes.unauthorized);
    expect(forged.stderr).toMatch(/\(UNAUTHORIZED\)\n$/);

    const away = await hiatus(['tasks', 'ls', '--json'], { config, env: { HIATUS_URL: unreachableUrl } });
    expect(away.code).toBe(exitCodes.unreachable);
    expect(away.stdout).toBe('');
    expect(JSON.parse(away.stderr)).toEqual({
      error: {
        kind: 'unreachable',
        exitCode: exitCodes.unreachable,
        code: null,
        message: `cannot reach the server at ${unreachableUrl} (connect ECONNREFUSED 127.0.0.1:2)`,
      },
    });

    // A pause needs the agent's history: an agent that is down refuses it, unless asked to pause without.
    const gone = await new FakeAgent().start();
    const { task } = await admin.tasks.create.mutate({ name: 'cli-agent-down', prompt: 'p', agentUrl: gone.url });
    await waitFor(async () => (await admin.tasks.get.query({ id: task.id })).status === 'active');
    await gone.stop();
    const down = await asLoggedIn('tasks', 'pause', task.id);
    expect(down.code).toBe(8);
    expect(down.stderr).toMatch(/^hiatus: .*the agent is unreachable.* \(PRECONDITION_FAILED\)\n$/);
    const anyway = await asLoggedIn('tasks', 'pause', task.id, '--without-snapshot');
    expect(anyway.code).toBe(0);
    expect(anyway.stdout).toMatch(
      /^paused: cli-agent-down \(.+\)\nsnapshot: none taken \(.+\); the previous one stays\n$/,
    );

    const notLoggedIn = await hiatus(['tasks', 'ls'], { config: await freshConfig() });
    expect(notLoggedIn.code).toBe(exitCodes.unauthorized);
    expect(notLoggedIn.stderr).toBe('hiatus: not logged in: run `hiatus login`, or set HIATUS_TOKEN\n');

    for (const args of [
      ['tasks', 'pause'], // missing argument
      ['tasks', 'frobnicate'], // no such command
      ['tasks', 'ls', '--limit', '0'], // out of range
      ['tasks', 'ls', '--status', 'asleep'],
      ['tasks', 'create', 'x'], // neither an agent nor a template
      ['tasks', 'get', 'not-an-id'], // the server's BAD_REQUEST
    ]) {
      const run = await asLoggedIn(...args);
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: exitCodes.usage, stdout: '' });
      expect(run.stderr).toMatch(/^hiatus: \S/);
    }
    const usageJson = await asLoggedIn('tasks', 'ls', '--limit', '0', '--json');
    expect(usageJson).toMatchObject({ code: exitCodes.usage, stdout: '' });
    expect(JSON.parse(usageJson.stderr)).toEqual({
      error: {
        kind: 'usage',
        exitCode: exitCodes.usage,
        code: null,
        message: "option '--limit <n>' argument '0' is invalid. a whole number from 1 to 200",
      },
    });
    const badRequest = await asLoggedIn('tasks', 'get', 'not-an-id');
    expect(badRequest.stderr).toMatch(/^hiatus: id: .+ \(BAD_REQUEST\)\n$/);
    const help = await asLoggedIn('tasks', 'logs', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--follow');
  });

  it('ends quietly when the reader of its output goes away (| head)', async () => {
    // A log far larger than a pipe holds, read by `head -n 1`, which exits after one line.
    const chatty = (await new FakeAgent().start()).say(4_000, 100);
    try {
      const { task } = await admin.tasks.create.mutate({
        name: 'chatty',
        prompt: '',
        agentUrl: chatty.url,
        sendPrompt: false,
      });
      await vi.waitFor(async () => expect((await admin.tasks.get.query({ id: task.id })).status).toBe('active'), {
        timeout: 30_000,
        interval: 50,
      });
      const { HIATUS_URL: _url, HIATUS_TOKEN: _token, ...env } = process.env;
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          'bash',
          ['-o', 'pipefail', '-c', `"${process.execPath}" "${bin}" tasks logs ${task.id} | head -n 1`],
          { env: { ...env, XDG_CONFIG_HOME: config }, timeout: 120_000, maxBuffer: 64 << 20 },
          (error, stdout, stderr) => resolve({ code: error ? (error.code as number | null) : 0, stdout, stderr }),
        );
      });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout.split('\n').filter(Boolean)).toHaveLength(1);
    } finally {
      await chatty.stop();
    }
  });

  it('exits 7 when the key is rate limited, saying when to retry', async () => {
    // A server of its own: two calls at once, then one every few hours (none while the test runs).
    const strict = await startTestServer(postgresServerUrl() ? 'postgres' : 'pglite', {
      HIATUS_MAX_BATCH_SIZE: '2',
      HIATUS_RATE_LIMIT_BURST: '2',
      HIATUS_RATE_LIMIT_PER_SECOND: '0.0001',
    });
    try {
      const env = { HIATUS_URL: strict.server.url, HIATUS_TOKEN: testAdminToken };
      const runs: Run[] = [];
      for (let i = 0; i < 3; i++) runs.push(await hiatus(['tasks', 'ls'], { config, env }));
      expect(runs.map((run) => run.code)).toEqual([0, 0, 7]);
      expect(runs[2]!.stderr).toMatch(/^hiatus: .+ \(retry after \d+ s\) \(TOO_MANY_REQUESTS\)\n$/);
    } finally {
      await strict.close();
    }
  });

  it("refuses a member another user's task, and the audit log", async () => {
    const { task } = await admin.tasks.create.mutate({ name: 'admins-own', prompt: 'p', agentUrl: agent.url });
    const member = await admin.users.create.mutate({ username: 'cli-member' });
    const { key } = await admin.apiKeys.create.mutate({ userId: member.id, name: 'laptop' });
    const asMember = (...args: string[]): Promise<Run> =>
      hiatus(args, { config, env: { HIATUS_URL: url, HIATUS_TOKEN: key } });

    for (const args of [
      ['tasks', 'get', task.id],
      ['tasks', 'pause', task.id],
      ['tasks', 'logs', task.id],
    ]) {
      const run = await asMember(...args);
      expect({ args, code: run.code }).toEqual({ args, code: exitCodes.notFound });
      expect(run.stderr).toMatch(/\(NOT_FOUND\)\n$/);
    }
    const audit = await asMember('audit');
    expect(audit.code).toBe(exitCodes.unauthorized);
    expect(audit.stderr).toMatch(/\(FORBIDDEN\)\n$/);
    const own = JSON.parse((await asMember('tasks', 'ls', '--json')).stdout);
    expect(own).toEqual({ items: [], nextCursor: null });

    // The admin sees the refusal in the audit log.
    const records = await json('audit', '--action', 'task.access_denied');
    expect(records.items).toContainEqual(expect.objectContaining({ actorId: member.id, resourceId: task.id }));
    const table = await asLoggedIn('audit', '--limit', '5');
    expect(table.stdout).toMatch(/^TIME +ACTOR +ACTION +RESOURCE +REASON +REQUEST\n/);
  });

  it("changes a task's settings, keeps it alive, and cancels a queued message", async () => {
    const first = await new FakeAgent().start();
    const moved = await new FakeAgent().start();
    try {
      const { task } = await admin.tasks.create.mutate({ name: 'cli-settings', prompt: 'p', agentUrl: first.url });
      const id = task.id;
      await waitFor(async () => (await admin.tasks.get.query({ id })).status === 'active');

      // Nothing to change: the CLI refuses before asking the server.
      const nothing = await asLoggedIn('tasks', 'update', id);
      expect(nothing).toMatchObject({ code: exitCodes.usage, stdout: '' });
      expect(nothing.stderr).toBe('hiatus: give --agent-url, --idle-timeout or --no-idle-timeout: nothing to change\n');

      const updated = await json('tasks', 'update', id, '--idle-timeout', '900', '--agent-url', moved.url);
      expect(updated).toMatchObject({ id, idleTimeoutSeconds: 900, agentUrl: moved.url });
      expect(await json('tasks', 'get', id)).toMatchObject({ idleTimeoutSeconds: 900, agentUrl: moved.url });
      expect((await asLoggedIn('tasks', 'get', id)).stdout).toMatch(/^idle timeout +15m$/m);
      // --no-idle-timeout sends null: the task's own timeout is cleared, the agent URL stays.
      const cleared = await asLoggedIn('tasks', 'update', id, '--no-idle-timeout');
      expect(cleared.code).toBe(0);
      expect(cleared.stdout).toMatch(/^idle timeout +default$/m);
      expect(await json('tasks', 'get', id)).toMatchObject({ idleTimeoutSeconds: null, agentUrl: moved.url });

      const before = Date.now();
      const kept = await json('tasks', 'keep-alive', id, '--for', '600');
      const after = Date.now();
      const until = new Date(kept.keepAliveUntil).getTime();
      expect(kept.task).toMatchObject({ id, status: 'active' });
      // 600 s from when the server took the call (a second either side for the database's clock).
      expect(until).toBeGreaterThanOrEqual(before + 599_000);
      expect(until).toBeLessThanOrEqual(after + 601_000);
      expect(new Date((await json('tasks', 'get', id)).keepAliveUntil).getTime()).toBe(until);
      // Without --for: the server's hour, replacing the ten minutes above.
      const hour = await asLoggedIn('tasks', 'keep-alive', id);
      expect(hour.stdout).toMatch(
        new RegExp(
          `^kept alive until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ \\((1h|5\\dm\\d+s) from now\\): cli-settings \\(${id}\\)\n$`,
        ),
      );
      expect((await asLoggedIn('tasks', 'get', id)).stdout).toMatch(
        /^kept alive until +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m,
      );
      expect((await asLoggedIn('tasks', 'keep-alive', id, '--for', '0')).code).toBe(exitCodes.usage);

      // A busy agent: messages wait in the task's inbox.
      moved.status = 'running';
      const queue = async (text: string): Promise<string> => {
        const sent = await json('tasks', 'send', id, text);
        expect(sent).toMatchObject({ queued: true, resumed: false });
        return sent.messageId;
      };
      const dropped = await queue('drop this');
      const droppedToo = await queue('and this');
      await queue('keep this');
      expect(await json('tasks', 'cancel-message', id, dropped)).toMatchObject({
        messageId: dropped,
        status: 'cancelled',
      });
      const human = await asLoggedIn('tasks', 'cancel-message', id, droppedToo);
      expect(human).toMatchObject({ code: 0, stderr: '' });
      expect(human.stdout).toMatch(
        new RegExp(`^cancelled message ${droppedToo} at \\d{4}-.+Z: it will not be delivered\n$`),
      );
      expect((await json('tasks', 'logs', id)).pending.map((p: { content: string }) => p.content)).toEqual([
        'keep this',
      ]);
      const again = await asLoggedIn('tasks', 'cancel-message', id, dropped);
      expect(again).toMatchObject({ code: exitCodes.conflict, stdout: '' });
      expect(again.stderr).toMatch(/^hiatus: .*already cancelled.* \(CONFLICT\)\n$/);
      const unknown = await asLoggedIn('tasks', 'cancel-message', id, '00000000-0000-4000-8000-000000000000');
      expect(unknown.code).toBe(exitCodes.notFound);

      // Once the agent is stable, only the message left goes.
      moved.status = 'stable';
      await waitFor(() => moved.received.includes('keep this'));
      expect(moved.received).toEqual(['keep this']);

      const help = await asLoggedIn('tasks', 'update', '--help');
      expect(help.stdout).toContain('--no-idle-timeout');
    } finally {
      await first.stop();
      await moved.stop();
    }
  });

  it("lists templates, their env's names but never its values, and logs out", async () => {
    const secret = 'sk-cli-secret-0123456789';
    await admin.templates.create.mutate({
      name: 'secretive',
      driver: 'command',
      settings: { start: 'true', stop: 'true', env: { ANTHROPIC_API_KEY: secret, REGION: 'eu' } },
    });
    const templates = await asLoggedIn('templates', 'ls');
    expect(templates.stdout).toMatch(
      /^NAME +VERSION +DRIVER +IDLE TIMEOUT +PARAMETERS +ENV +ON RESUME +PROVISIONER TAGS +ARCHIVED +DESCRIPTION\ndemo +1 +process /,
    );
    expect(templates.stdout).toMatch(/\nsecretive +1 +command +default +- +ANTHROPIC_API_KEY, REGION +- /);
    const listed = await json('templates', 'ls');
    // demo-docker too when the server found a Docker Engine at its start.
    const names = listed.map((template: { name: string }) => template.name);
    expect(names.filter((name: string) => name !== 'demo-docker')).toEqual(['demo', 'secretive']);
    expect(listed.find((template: { name: string }) => template.name === 'secretive').envNames).toEqual([
      'ANTHROPIC_API_KEY',
      'REGION',
    ]);
    expect(`${templates.stdout}${JSON.stringify(listed)}`).not.toContain(secret);

    // An admin routes a template's builds to the provisioners having its tags; none: any provisioner.
    const tagged = await asLoggedIn('templates', 'tag', 'secretive', 'host=a', 'gpu=true');
    expect(tagged).toMatchObject({ code: 0, stdout: 'secretive version 2: provisioner tags gpu=true host=a\n' });
    expect((await admin.templates.get.query({ name: 'secretive' })).provisionerTags).toEqual({
      host: 'a',
      gpu: 'true',
    });
    expect((await asLoggedIn('templates', 'ls')).stdout).toMatch(/\nsecretive +2 +command .* gpu=true host=a /);
    const refused = await asLoggedIn('templates', 'tag', 'secretive', 'host a');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('"host a" is not name=value');
    const cleared = await json('templates', 'tag', 'secretive');
    expect(cleared).toMatchObject({ version: 3, provisionerTags: {} });

    const logout = await asLoggedIn('logout');
    expect(logout.code).toBe(0);
    await expect(stat(path.join(config, 'hiatus/config.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await asLoggedIn('tasks', 'ls')).code).toBe(exitCodes.unauthorized);
  });
});

/** `hiatus tasks logs <id> -f` as the logged-in user, its output gathered as it comes. */
function follow(config: string, id: string, ...args: string[]) {
  const child = spawn(process.execPath, [bin, 'tasks', 'logs', id, '-f', '--interval', '200', ...args], {
    env: { ...process.env, XDG_CONFIG_HOME: config, HIATUS_URL: '', HIATUS_TOKEN: '' },
  });
  const follower = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise<number | null>((resolve) => child.on('exit', resolve)),
  };
  child.stdout.on('data', (chunk) => {
    follower.stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    follower.stderr += chunk;
  });
  return follower;
}

/**
 * Waits until `condition` holds, looking every 50 ms; `seen` tells what was there instead if it
 * never does. Generous: a wait on a condition costs nothing once it holds.
 */
async function waitFor(condition: () => boolean | Promise<boolean>, seen: () => string = () => ''): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await condition())) throw new Error(`not yet: ${condition}\n${seen()}`);
    },
    { timeout: 60_000, interval: 50 },
  );
}
