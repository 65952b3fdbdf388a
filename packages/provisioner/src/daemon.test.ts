import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, codeOf } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { type DaemonProcess, killEveryDaemon, type LogLine, startDaemon, within } from '../test/daemon-process.ts';
import {
  demoAgent,
  environOf,
  eventually,
  gatedAgent,
  getJson,
  killTaskProcesses,
  processesOfTask,
  useHarness,
} from '../test/harness.ts';
import { parseDaemonArgs } from './daemon-cli.ts';
import { processDriver } from './index.ts';

afterAll(killEveryDaemon);

function fail(why: string): never {
  throw new Error(why);
}

/**
 * A server URL that refuses connections: port 2, where nothing listens on a test machine, which
 * no listen(0) of a test is given (the ephemeral range starts far above), and which fetch tries
 * (it refuses port 1 as a "bad port").
 */
const refusingUrl = 'http://127.0.0.1:2';

describe('the daemon flags', () => {
  const env = { HIATUS_URL: 'http://127.0.0.1:8080', HIATUS_TOKEN: 'hp_key' };
  const parse = (args: string[], vars: Record<string, string> = env) => parseDaemonArgs(args, vars, '/srv/hiatus');

  it('reads the environment, lets flags override it, and leaves the rest to the defaults', () => {
    expect(parse([])).toEqual({
      options: { url: env.HIATUS_URL, token: env.HIATUS_TOKEN, dataDir: '/srv/hiatus/.hiatus/provisioner' },
    });
    const flags =
      '--url https://hiatus.example --token other --id gpu-1 --drivers command,external --templates claude,codex';
    const more = '--data-dir state --concurrency 8 --heartbeat-ms 1000 --wait-ms 0';
    expect(parse(`${flags} ${more}`.split(' '), { ...env, HIATUS_PROVISIONER_DIR: '/var/lib/p' })).toEqual({
      options: {
        url: 'https://hiatus.example',
        token: 'other',
        provisionerId: 'gpu-1',
        drivers: ['command', 'external'],
        templates: ['claude', 'codex'],
        dataDir: '/srv/hiatus/state',
        concurrency: 8,
        heartbeatMs: 1000,
        waitMs: 0,
      },
    });
    expect(parse([], { ...env, HIATUS_PROVISIONER_DIR: '/var/lib/p' })).toMatchObject({
      options: { dataDir: '/var/lib/p' },
    });
    expect(parse(['--help'])).toEqual({ help: true });
  });

  it.each([
    ['no server', [], {}, 'a server is required: --url or HIATUS_URL (such as http://127.0.0.1:8080)'],
    [
      'no key',
      ['--url', 'http://127.0.0.1:8080'],
      {},
      'a key is required: HIATUS_TOKEN or --token (a provisioner key, or an admin full key)',
    ],
    [
      'an empty key',
      [],
      { ...env, HIATUS_TOKEN: '' },
      'a key is required: HIATUS_TOKEN or --token (a provisioner key, or an admin full key)',
    ],
    ['a URL that is not http', ['--url', 'ftp://host'], env, '--url must be an http or https URL (got "ftp://host")'],
    [
      'a URL without a scheme',
      [],
      { ...env, HIATUS_URL: 'localhost:8080' },
      '--url must be an http or https URL (got "localhost:8080")',
    ],
    ['an unknown flag', ['--concurency', '2'], env, 'unknown option --concurency'],
    ['a flag without its value', ['--token'], env, 'option --token needs a value'],
    ['a stray argument', ['start'], env, 'unexpected argument "start": every option is a --flag'],
    ['an id with a space', ['--id', 'my box'], env, '--id must be 1 to 128 characters without spaces (got "my box")'],
    [
      'an unknown driver',
      ['--drivers', 'process,kubernetes'],
      env,
      'unknown driver "kubernetes" in --drivers (known: process, command, docker, external)',
    ],
    [
      'an empty template name',
      ['--templates', 'a,'],
      env,
      '--templates must be a comma-separated list of names (got "a,")',
    ],
    [
      'a template name the server refuses',
      ['--templates', 'Claude'],
      env,
      '"Claude" in --templates is not a template name (lowercase letters, digits, ".", "_" and "-", up to 64)',
    ],
    ['no concurrency', ['--concurrency', '0'], env, '--concurrency must be a whole number from 1 to 256 (got "0")'],
    ['a fraction', ['--concurrency', '1.5'], env, '--concurrency must be a whole number from 1 to 256 (got "1.5")'],
    [
      'a long poll too long',
      ['--wait-ms', '60000'],
      env,
      '--wait-ms must be a whole number from 0 to 30000 (got "60000")',
    ],
    [
      'a heartbeat in words',
      ['--heartbeat-ms', 'often'],
      env,
      '--heartbeat-ms must be a whole number from 100 to 600000 (got "often")',
    ],
  ])('refuses %s', (_, args, vars, error) => {
    expect(parse(args, vars)).toEqual({ error });
  });
});

describe('hiatus-provisioner, without a server', () => {
  const h = useHarness();

  it('exits 2 with one line on stderr for bad arguments', async () => {
    const [unknown, missing] = [startDaemon(['--concurency', '2']), startDaemon([], { HIATUS_URL: 'http://h:1' })];
    expect(await within(60_000, 'the daemons to exit', Promise.all([unknown.exited, missing.exited]))).toEqual([2, 2]);
    expect(unknown.stderr()).toBe('hiatus-provisioner: unknown option --concurency (see --help)\n');
    expect(missing.stderr()).toBe(
      'hiatus-provisioner: a key is required: HIATUS_TOKEN or --token (a provisioner key, or an admin full key) (see --help)\n',
    );
    expect([...unknown.lines, ...missing.lines]).toEqual([]);
  });

  it('prints its flags for --help', async () => {
    const daemon = startDaemon(['--help']);
    expect(await within(60_000, 'the daemon to exit', daemon.exited)).toBe(0);
    expect(daemon.lines.map((l) => l.raw).join('\n')).toContain('--heartbeat-ms <ms>');
  });

  it('kills nothing while the server cannot say what should run, retries, and drains on SIGTERM', async () => {
    const agent = await processDriver.run(h.spec({ settings: { command: [process.execPath, demoAgent] } }), h.ctx);
    const daemon = startDaemon(['--url', refusingUrl, '--data-dir', h.dataDir, '--id', 'lonely'], {
      HIATUS_TOKEN: 'hp_k',
    });

    const started = await daemon.waitFor((l) => l.msg === 'provisioner started');
    expect(started).toMatchObject({ level: 'info', provisionerId: 'lonely', dataDir: h.dataDir, concurrency: 4 });
    expect(started.drivers).toEqual(['process', 'command', 'docker', 'external']);
    const retries = () =>
      daemon.lines.filter((l) => l.msg === 'cannot ask the server which tasks should run, retrying');
    await daemon.waitFor(() => retries().length >= 3);
    expect(retries()[0]).toMatchObject({ level: 'warn', error: expect.stringContaining('ECONNREFUSED') });
    const waits = retries().map((l) => l.retryInMs as number);
    expect(waits[2]!).toBeGreaterThan(waits[0]!); // backing off, not spinning

    expect(await getJson(`${agent.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await processesOfTask(h.taskId)).toHaveLength(1);

    daemon.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', daemon.exited)).toBe(0);
    expect(daemon.stderr()).toBe('');
    expect(daemon.lines.at(-1)).toMatchObject({ level: 'info', msg: 'provisioner stopped' });
    expect(daemon.lines.some((l) => l.msg === 'reconciled')).toBe(false);
    expect(await processesOfTask(h.taskId)).toHaveLength(1); // still running: nothing was killed blindly
  });
});

describe.runIf(postgresServerUrl())('hiatus-provisioner against a real server', () => {
  let running: TestServer | undefined;
  let admin: ReturnType<typeof apiClient>;
  let provisionerKey: string;
  let dataDir: string;
  let gates: string;
  const taskIds: string[] = [];

  beforeAll(async () => {
    // The server in this process: the daemons are the processes this suite starts and kills.
    running = await startTestServer('postgres', {
      HIATUS_BUILTIN_PROVISIONER: 'false',
      HIATUS_PROVISIONER_STALE_MS: '2000',
      HIATUS_PROVISIONER_POLL_MS: '200',
    });
    admin = apiClient(running.server.url, running.adminToken);
    provisionerKey = (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'daemons' })).key;
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-daemons-'));
    gates = join(dataDir, 'gates');
    await mkdir(gates);
    await defineTemplate('demo', { command: [process.execPath, demoAgent] });
    // An agent that comes up only when its test opens the gate (`openGate`): a start that is
    // certainly still running when something happens to its daemon, and that ends only by the gate
    // or a cancel. It listens at once: a port left unbound a while could be taken meanwhile.
    await defineTemplate('gated', {
      command: [process.execPath, gatedAgent],
      env: { GATE_DIR: gates },
      startTimeoutMs: 600_000,
    });
  }, 120_000);

  afterAll(async () => {
    await killEveryDaemon();
    for (const taskId of taskIds) await killTaskProcesses(taskId);
    await running?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  /** Lets the gated agent of `taskId` answer: its start ends, and well. */
  const openGate = (taskId: string) => writeFile(join(gates, taskId), '');

  /** Until the gated agent of `taskId` listens (answering 503 behind its closed gate). */
  const gatedAgentListening = (taskId: string) =>
    eventually(async () => {
      const [pid] = await processesOfTask(taskId);
      expect(pid).toBeDefined();
      const { PORT } = await environOf(pid!);
      expect((await fetch(`http://127.0.0.1:${PORT}/status`)).status).toBe(503);
    });

  /** Saves a template (`process` unless said); one the server made itself (its own `demo`) gets these settings as a new version. */
  async function defineTemplate(name: string, settings: Record<string, unknown>, driver = 'process'): Promise<void> {
    const created = await codeOf(admin.templates.create.mutate({ name, driver, settings }));
    if (created === 'CONFLICT') await admin.templates.update.mutate({ name, driver, settings });
    else expect(created).toBe('OK');
  }

  /** A daemon of this server, sharing the one data directory, quick to poll and to beat. */
  function daemon(id: string, args: string[] = []): DaemonProcess {
    const quick = '--heartbeat-ms 300 --wait-ms 1000'.split(' ');
    const flags = ['--url', running!.server.url, '--id', id, '--data-dir', dataDir, ...quick];
    return startDaemon([...flags, ...args], { HIATUS_TOKEN: provisionerKey });
  }

  async function createTask(name: string, template: string): Promise<string> {
    const { task } = await admin.tasks.create.mutate({ name, prompt: `do ${name}`, template });
    taskIds.push(task.id);
    return task.id;
  }

  /** The task once its status is `status`. */
  async function whenStatus(taskId: string, status: string) {
    return eventually(async () => {
      const task = await admin.tasks.get.query({ id: taskId });
      expect(task.status).toBe(status);
      return task;
    });
  }

  /** Until the task's latest build is a job waiting to be taken (again), without an error. */
  const whenJobPending = (taskId: string) =>
    eventually(async () => {
      const [build] = (await admin.builds.list.query({ taskId })).items;
      expect(build).toMatchObject({ jobStatus: 'pending', error: null });
    });

  /** The log line saying how `taskId`'s job ended, in whichever daemon ran it. */
  const jobEnd = (taskId: string) => (l: LogLine) =>
    l.taskId === taskId && (l.msg === 'job succeeded' || l.msg === 'job failed');

  // First of this server's tests: no other daemon has a long poll open, so the server's listeners count this one's.
  it('gives no job to a daemon killed in its long poll: the next daemon takes the job queued after', async () => {
    const { app } = running!.server;
    const listening = app.events.listenerCount('build');
    const killed = daemon('killed', ['--wait-ms', '30000']);
    // Its acquire waits on the server, which listens for a job to hand it.
    await eventually(async () => expect(app.events.listenerCount('build')).toBe(listening + 1));
    killed.signal('SIGKILL');
    expect(await within(60_000, 'the daemon to die', killed.exited)).toBe('SIGKILL');

    const taskId = await createTask('after-the-kill', 'demo');
    const alive = daemon('alive');
    const active = await whenStatus(taskId, 'active');
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await alive.waitFor(jobEnd(taskId))).toMatchObject({ msg: 'job succeeded', transition: 'start' });
    const builds = (await admin.builds.list.query({ taskId })).items;
    expect(builds).toMatchObject([{ transition: 'start', jobStatus: 'succeeded', error: null }]);

    await admin.tasks.pause.mutate({ id: taskId });
    await whenStatus(taskId, 'paused');
    alive.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', alive.exited)).toBe(0);
  });

  it('walks a task from create to active, paused and active again, two daemons sharing one data directory', async () => {
    const a = daemon('walk-a');
    const b = daemon('walk-b');
    await Promise.all([a, b].map((d) => d.waitFor((l) => l.msg === 'reconciled')));

    const taskId = await createTask('walk', 'demo');
    const active = await whenStatus(taskId, 'active');
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    const [agentPid] = await processesOfTask(taskId);
    expect(agentPid).toBeDefined();
    const env = await environOf(agentPid!);
    expect(env).toMatchObject({
      HIATUS_TASK_ID: taskId,
      HIATUS_PROMPT: 'do walk',
      HIATUS_REASON: 'initiator',
      HIATUS_START: 'first',
    });
    expect(env.HIATUS_PREVIOUS_CONVERSATION).toBeUndefined();
    expect(env.HIATUS_TOKEN).toBeUndefined(); // the provisioner's key stays with the provisioner
    const started = await eventually(async () => [...a.lines, ...b.lines].find(jobEnd(taskId)) ?? fail('no job end'));
    expect(started).toMatchObject({ msg: 'job succeeded', outputs: { agentUrl: active.agentUrl, pid: agentPid } });

    await admin.tasks.pause.mutate({ id: taskId });
    await whenStatus(taskId, 'paused');
    await eventually(async () => expect(await processesOfTask(taskId)).toEqual([]));

    const snapshot = await admin.snapshots.get.query({ taskId });
    await admin.tasks.resume.mutate({ id: taskId });
    const resumed = await whenStatus(taskId, 'active');
    expect(resumed.agentUrl).not.toBe(active.agentUrl);
    expect(await getJson(`${resumed.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await processesOfTask(taskId)).toHaveLength(1);
    // The resume's daemon fetched the previous conversation (provisioner.previousConversation) and handed it over.
    const [resumedPid] = await processesOfTask(taskId);
    const resumedEnv = await environOf(resumedPid!);
    expect(resumedEnv).toMatchObject({
      HIATUS_START: 'resume',
      HIATUS_PREVIOUS_CONVERSATION: join(dataDir, 'conversations', `${taskId}.json`),
    });
    const handed = JSON.parse(await readFile(resumedEnv.HIATUS_PREVIOUS_CONVERSATION!, 'utf8'));
    expect(handed).toEqual(JSON.parse(JSON.stringify(snapshot.messages)));
    expect(await getJson(`${resumed.agentUrl}/messages`)).toMatchObject({
      messages: [
        {
          id: 0,
          role: 'agent',
          content: expect.stringMatching(`^Resumed: I was given ${snapshot.messageCount} earlier messages`),
        },
      ],
    });

    for (const d of [a, b]) d.signal('SIGTERM');
    expect(await within(60_000, 'both daemons to drain', Promise.all([a.exited, b.exited]))).toEqual([0, 0]);
    expect(a.stderr() + b.stderr()).toBe('');
    // Three jobs (start, stop, start), each run by exactly one of them.
    const ran = [...a.lines, ...b.lines].filter((l) => l.msg === 'job succeeded' && l.taskId === taskId);
    expect(ran.map((l) => l.transition).sort()).toEqual(['start', 'start', 'stop']);
    expect(new Set(ran.map((l) => l.buildId)).size).toBe(3);
  });

  it('survives a daemon killed in the middle of a start: the job is handed out again, the other serves on, a restart runs it', async () => {
    const doomed = daemon('doomed'); // takes any template
    const survivor = daemon('survivor', ['--templates', 'demo']); // never the gated one
    await Promise.all([doomed, survivor].map((d) => d.waitFor((l) => l.msg === 'reconciled')));

    const orphaned = await createTask('orphaned', 'gated');
    await doomed.waitFor((l) => l.msg === 'job started' && l.taskId === orphaned);
    // Its agent listens behind a closed gate: the start cannot have ended.
    await gatedAgentListening(orphaned);
    doomed.signal('SIGKILL');
    expect(await within(60_000, 'the daemon to die', doomed.exited)).toBe('SIGKILL');

    // No heartbeat for 2 s: the server hands the job out again, and the task waits for it (no error).
    // The agent the killed daemon started runs on until the retry; the survivor takes no gated job.
    await whenJobPending(orphaned);
    expect((await admin.tasks.get.query({ id: orphaned })).status).toBe('pending');
    const half = await processesOfTask(orphaned);
    expect(half).toHaveLength(1);

    const served = await createTask('served', 'demo');
    const active = await whenStatus(served, 'active');
    expect((await survivor.waitFor(jobEnd(served))).msg).toBe('job succeeded');

    // Restarted on the same data directory: its reconcile keeps the agent of a task that should run,
    // and the retry stops it before starting the task's agent again.
    const restarted = daemon('doomed');
    const reconciled = await restarted.waitFor((l) => l.msg === 'reconciled' && l.driver === 'process');
    expect(reconciled).toMatchObject({ stopped: [] });
    const retry = await restarted.waitFor((l) => l.msg === 'job started' && l.taskId === orphaned);
    expect(retry).toMatchObject({ attempt: 2 });
    await openGate(orphaned);
    const retried = await whenStatus(orphaned, 'active');
    const agents = await processesOfTask(orphaned);
    expect(agents).toHaveLength(1);
    expect(agents).not.toContain(half[0]);
    expect(await getJson(`${retried.agentUrl}/status`)).toMatchObject({ agent_type: 'gated' });
    expect((await admin.builds.list.query({ taskId: orphaned })).items).toMatchObject([
      { transition: 'start', jobStatus: 'succeeded', error: null },
    ]);
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });

    for (const d of [restarted, survivor]) d.signal('SIGTERM');
    expect(await within(60_000, 'the daemons to drain', Promise.all([restarted.exited, survivor.exited]))).toEqual([
      0, 0,
    ]);
  });

  it('cancels a job the server took back: a heartbeat answered CONFLICT kills the start, nothing is reported, and the retry runs after it', async () => {
    const frozen = daemon('frozen');
    await frozen.waitFor((l) => l.msg === 'reconciled');
    const taskId = await createTask('taken-back', 'gated');
    await frozen.waitFor((l) => l.msg === 'job started' && l.taskId === taskId);
    await gatedAgentListening(taskId);

    const [first] = await processesOfTask(taskId);
    frozen.signal('SIGSTOP'); // alive, but silent: its job goes stale, and is handed out again
    await whenJobPending(taskId);
    frozen.signal('SIGCONT');
    await frozen.waitFor((l) => l.msg.startsWith('job dropped') && l.taskId === taskId);
    expect(frozen.lines.find((l) => l.msg.startsWith('heartbeat refused'))).toMatchObject({
      level: 'warn',
      taskId,
      error: expect.stringMatching(/^CONFLICT: /),
    });
    // The job comes back to it as a retry, which runs once the cancelled start has wound down.
    expect(
      await frozen.waitFor((l) => l.msg === 'job started' && l.taskId === taskId && l.attempt === 2),
    ).toBeDefined();
    await openGate(taskId);
    await whenStatus(taskId, 'active');
    const agents = await processesOfTask(taskId);
    expect(agents).toHaveLength(1);
    expect(agents).not.toContain(first);
    await frozen.waitFor(jobEnd(taskId));
    expect(frozen.lines.filter(jobEnd(taskId))).toMatchObject([{ msg: 'job succeeded' }]);

    frozen.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', frozen.exited)).toBe(0);
  });

  it('logs a refused key as an error and keeps trying, without crashing', async () => {
    const refused = startDaemon(['--url', running!.server.url, '--data-dir', dataDir], {
      HIATUS_TOKEN: 'hiatus_not-a-key',
    });
    const line = await refused.waitFor((l) => l.msg === 'cannot ask the server which tasks should run, retrying');
    expect(line).toMatchObject({ level: 'error', error: expect.stringMatching(/^UNAUTHORIZED: /) });
    refused.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to stop', refused.exited)).toBe(0);
    expect(refused.lines.some((l) => l.msg === 'reconciled')).toBe(false);
  });

  it('reports an agentUrl the server refuses (outside HIATUS_DRIVER_AGENT_NETWORKS) as the failure of its start', async () => {
    await defineTemplate('far', { start: `echo '{"agentUrl": "http://8.8.8.8:3284"}'`, stop: 'true' }, 'command');
    const reporter = daemon('reporter');
    await reporter.waitFor((l) => l.msg === 'reconciled');
    const taskId = await createTask('far-away', 'far');
    await whenStatus(taskId, 'error');
    const [build] = (await admin.builds.list.query({ taskId })).items;
    expect(build).toMatchObject({
      transition: 'start',
      jobStatus: 'failed',
      error:
        "the server refused the outputs: BAD_REQUEST: outputs.agentUrl: the template agent's address is not allowed: 8.8.8.8 is a public address (HIATUS_DRIVER_AGENT_NETWORKS can allow it)",
    });
    expect((await admin.tasks.get.query({ id: taskId })).agentUrl).not.toBe('http://8.8.8.8:3284');
    reporter.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to drain', reporter.exited)).toBe(0);
  });

  it('drains on SIGTERM: finishes and reports the start it runs, then exits 0; a second signal exits at once', async () => {
    const draining = daemon('draining');
    await draining.waitFor((l) => l.msg === 'reconciled');
    const finished = await createTask('finished', 'gated');
    await draining.waitFor((l) => l.msg === 'job started' && l.taskId === finished);
    await gatedAgentListening(finished);
    draining.signal('SIGTERM');
    // Stopping, with the start still running behind the closed gate; then the agent comes up.
    await draining.waitFor((l) => l.msg === 'waiting for the running jobs');
    expect(draining.lines.some(jobEnd(finished))).toBe(false);
    await openGate(finished);
    expect(await within(60_000, 'the daemon to drain', draining.exited)).toBe(0);
    expect(draining.lines.find(jobEnd(finished))).toMatchObject({ msg: 'job succeeded' });
    expect(draining.lines.at(-1)).toMatchObject({ msg: 'provisioner stopped' });
    const active = await whenStatus(finished, 'active');
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'gated' });

    const impatient = daemon('impatient');
    const cut = await createTask('cut', 'gated');
    await impatient.waitFor((l) => l.msg === 'job started' && l.taskId === cut);
    impatient.signal('SIGTERM');
    await impatient.waitFor((l) => l.msg.startsWith('signal received'));
    impatient.signal('SIGTERM');
    expect(await within(60_000, 'the daemon to exit', impatient.exited)).toBe(143); // not 0: no drain
    expect(impatient.lines.some(jobEnd(cut))).toBe(false);
    await whenJobPending(cut); // its job went stale: handed out again, for the next daemon
  });
});
