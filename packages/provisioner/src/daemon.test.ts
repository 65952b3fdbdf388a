import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from '../../../apps/server/test/databases.ts';
import { type ServerProcess, startServerProcess } from '../../../apps/server/test/server-process.ts';
import { type DaemonProcess, killEveryDaemon, type LogLine, startDaemon, within } from '../test/daemon-process.ts';
import {
  demoAgent,
  environOf,
  eventually,
  getJson,
  killTaskProcesses,
  processesOfTask,
  useHarness,
} from '../test/harness.ts';
import { processDriver } from './index.ts';

const h = useHarness();

afterAll(killEveryDaemon);

/** A port nothing listens on (for a while). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('hiatus-provisioner, without a server', () => {
  const server = { HIATUS_URL: 'http://127.0.0.1:8080', HIATUS_TOKEN: 'hp_key' };

  it.concurrent.each([
    ['no server', [], {}, 'a server is required: --url or HIATUS_URL (such as http://127.0.0.1:8080)'],
    ['no key', ['--url', 'http://127.0.0.1:8080'], {}, 'a key is required: HIATUS_TOKEN or --token'],
    ['a URL that is not http', ['--url', 'ftp://host'], { HIATUS_TOKEN: 'k' }, '--url must be an http or https URL'],
    ['an unknown flag', ['--concurency', '2'], server, 'unknown option --concurency'],
    ['a flag without its value', ['--token'], server, 'option --token needs a value'],
    ['a stray argument', ['start'], server, 'unexpected argument "start": every option is a --flag'],
    ['an unknown driver', ['--drivers', 'process,docker'], server, 'unknown driver "docker" in --drivers'],
    ['an empty template name', ['--templates', 'a,'], server, '--templates must be a comma-separated list'],
    ['no concurrency', ['--concurrency', '0'], server, '--concurrency must be a whole number from 1 to 256'],
    ['a long poll too long', ['--wait-ms', '60000'], server, '--wait-ms must be a whole number from 0 to 30000'],
    ['a heartbeat in words', ['--heartbeat-ms', 'often'], server, '--heartbeat-ms must be a whole number'],
    ['a bad value from the environment', [], { ...server, HIATUS_URL: 'localhost:8080' }, '--url must be an http'],
  ])('exits 2 with one line on stderr for %s', async (_, args, env, message) => {
    const daemon = startDaemon(args, env);
    expect(await within(15_000, 'the daemon to exit', daemon.exited)).toBe(2);
    const stderr = daemon.stderr();
    expect(stderr.startsWith(`hiatus-provisioner: ${message}`)).toBe(true);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(daemon.lines).toEqual([]);
  });

  it('lets flags override the environment', async () => {
    const daemon = startDaemon(['--url', 'http://127.0.0.1:8080', '--wait-ms', '5'], {
      ...server,
      HIATUS_URL: 'nonsense',
      HIATUS_TOKEN: '',
      HIATUS_PROVISIONER_DIR: h.dataDir,
    });
    expect(await within(15_000, 'the daemon to exit', daemon.exited)).toBe(2);
    expect(daemon.stderr()).toMatch(/^hiatus-provisioner: a key is required/); // an empty variable is unset
  });

  it('prints its flags for --help', async () => {
    const daemon = startDaemon(['--help']);
    expect(await within(15_000, 'the daemon to exit', daemon.exited)).toBe(0);
    expect(daemon.lines.map((l) => l.raw).join('\n')).toContain('--heartbeat-ms <ms>');
  });

  it('kills nothing while the server cannot say what should run, retries, and drains on SIGTERM', async () => {
    const agent = await processDriver.run(h.spec({ settings: { command: [process.execPath, demoAgent] } }), h.ctx);
    const url = `http://127.0.0.1:${await closedPort()}`;
    const daemon = startDaemon(['--url', url, '--data-dir', h.dataDir, '--id', 'lonely'], { HIATUS_TOKEN: 'hp_k' });

    const started = await daemon.waitFor((l) => l.msg === 'provisioner started');
    expect(started).toMatchObject({ level: 'info', provisionerId: 'lonely', dataDir: h.dataDir, concurrency: 4 });
    expect(started.drivers).toEqual(['process', 'command', 'external']);
    const retries = () =>
      daemon.lines.filter((l) => l.msg === 'cannot ask the server which tasks should run, retrying');
    await daemon.waitFor(() => retries().length >= 3);
    expect(retries()[0]).toMatchObject({ level: 'warn', error: expect.stringContaining('ECONNREFUSED') });
    const waits = retries().map((l) => l.retryInMs as number);
    expect(waits[2]!).toBeGreaterThan(waits[0]!); // backing off, not spinning

    expect(await getJson(`${agent.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await processesOfTask(h.taskId)).toHaveLength(1);

    daemon.signal('SIGTERM');
    expect(await within(5_000, 'the daemon to drain', daemon.exited)).toBe(0);
    expect(daemon.stderr()).toBe('');
    expect(daemon.lines.at(-1)).toMatchObject({ level: 'info', msg: 'provisioner stopped' });
    expect(daemon.lines.some((l) => l.msg === 'reconciled')).toBe(false);
    expect(await processesOfTask(h.taskId)).toHaveLength(1); // still running: nothing was killed blindly
  });
});

describe.runIf(postgresServerUrl())('hiatus-provisioner against a real server', () => {
  const adminToken = 'e2e-admin-token-0123456789abcdef';
  let database: TestDatabase | undefined;
  let server: ServerProcess | undefined;
  let admin: ReturnType<typeof apiClient>;
  let provisionerKey: string;
  let dataDir: string;
  const taskIds: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    if (database.config.kind !== 'postgres') throw new Error('expected PostgreSQL');
    server = await startServerProcess({
      DATABASE_URL: database.config.url,
      HIATUS_BUILTIN_PROVISIONER: 'false',
      HIATUS_PROVISIONER_STALE_MS: '2000',
      HIATUS_PROVISIONER_POLL_MS: '200',
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
    });
    admin = apiClient(server.url, adminToken);
    provisionerKey = (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'daemons' })).key;
    const agent = { NODE: process.execPath, AGENT: demoAgent };
    await admin.templates.create.mutate({
      name: 'demo',
      driver: 'process',
      settings: { command: [process.execPath, demoAgent] },
    });
    // An agent that takes its time to come up: a start that is still running when something happens.
    await admin.templates.create.mutate({
      name: 'slow',
      driver: 'process',
      settings: { command: ['/bin/sh', '-c', 'sleep 2; exec "$NODE" "$AGENT"'], env: agent },
    });
    dataDir = await mkdtemp(join(tmpdir(), 'hiatus-daemons-'));
  }, 120_000);

  afterAll(async () => {
    await killEveryDaemon();
    for (const taskId of taskIds) await killTaskProcesses(taskId);
    await server?.stop();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  /** A daemon of this server, sharing the one data directory, quick to poll and to beat. */
  function daemon(id: string, args: string[] = []): DaemonProcess {
    const flags = [
      '--url',
      server!.url,
      '--id',
      id,
      '--data-dir',
      dataDir,
      '--heartbeat-ms',
      '300',
      '--wait-ms',
      '1000',
    ];
    return startDaemon([...flags, ...args], { HIATUS_TOKEN: provisionerKey });
  }

  async function createTask(name: string, template: string): Promise<string> {
    const { task } = await admin.tasks.create.mutate({ name, prompt: `do ${name}`, template });
    taskIds.push(task.id);
    return task.id;
  }

  /** The task once its status is `status` (within `ms`). */
  async function whenStatus(taskId: string, status: string, ms = 20_000) {
    return eventually(async () => {
      const task = await admin.tasks.get.query({ id: taskId });
      expect(task.status).toBe(status);
      return task;
    }, ms);
  }

  /** The log line saying how `taskId`'s job ended, in whichever daemon ran it. */
  const jobEnd = (taskId: string) => (l: LogLine) =>
    l.taskId === taskId && (l.msg === 'job succeeded' || l.msg === 'job failed');

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
    expect(env).toMatchObject({ HIATUS_TASK_ID: taskId, HIATUS_PROMPT: 'do walk', HIATUS_REASON: 'initiator' });
    expect(env.HIATUS_TOKEN).toBeUndefined(); // the provisioner's key stays with the provisioner
    const started = await Promise.race([a, b].map((d) => d.waitFor(jobEnd(taskId))));
    expect(started).toMatchObject({ msg: 'job succeeded', outputs: { agentUrl: active.agentUrl, pid: agentPid } });

    await admin.tasks.pause.mutate({ id: taskId });
    await whenStatus(taskId, 'paused');
    await eventually(async () => expect(await processesOfTask(taskId)).toEqual([]));

    await admin.tasks.resume.mutate({ id: taskId });
    const resumed = await whenStatus(taskId, 'active');
    expect(resumed.agentUrl).not.toBe(active.agentUrl);
    expect(await getJson(`${resumed.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });
    expect(await processesOfTask(taskId)).toHaveLength(1);

    for (const d of [a, b]) d.signal('SIGTERM');
    expect(await within(10_000, 'both daemons to drain', Promise.all([a.exited, b.exited]))).toEqual([0, 0]);
    expect(a.stderr() + b.stderr()).toBe('');
    // Three jobs (start, stop, start), each run by exactly one of them.
    const ran = [...a.lines, ...b.lines].filter((l) => l.msg === 'job succeeded' && l.taskId === taskId);
    expect(ran.map((l) => l.transition).sort()).toEqual(['start', 'start', 'stop']);
    expect(new Set(ran.map((l) => l.buildId)).size).toBe(3);
  });

  it('survives a daemon killed in the middle of a start: the job fails, the other serves on, a restart reconciles', async () => {
    const doomed = daemon('doomed'); // takes any template
    const survivor = daemon('survivor', ['--templates', 'demo']); // never the slow one
    await Promise.all([doomed, survivor].map((d) => d.waitFor((l) => l.msg === 'reconciled')));

    const orphaned = await createTask('orphaned', 'slow');
    await doomed.waitFor((l) => l.msg === 'job started' && l.taskId === orphaned);
    await eventually(async () => expect(await processesOfTask(orphaned)).toHaveLength(1));
    doomed.signal('SIGKILL');
    expect(await within(5_000, 'the daemon to die', doomed.exited)).toBe('SIGKILL');

    // No heartbeat for 2 s: the server fails the job; the agent it started runs on, orphaned.
    const failed = await whenStatus(orphaned, 'error', 15_000);
    expect(failed.status).toBe('error');
    const [build] = (await admin.builds.list.query({ taskId: orphaned })).items;
    expect(build).toMatchObject({ transition: 'start', jobStatus: 'failed' });
    expect(build!.error).toContain('doomed stopped sending heartbeats');
    expect(await processesOfTask(orphaned)).toHaveLength(1);

    const served = await createTask('served', 'demo');
    const active = await whenStatus(served, 'active');
    expect((await survivor.waitFor(jobEnd(served))).msg).toBe('job succeeded');

    // Restarted on the same data directory, it stops the orphan and leaves the task that should run.
    const restarted = daemon('doomed');
    const reconciled = await restarted.waitFor((l) => l.msg === 'reconciled');
    expect(reconciled).toMatchObject({ driver: 'process', stopped: [orphaned] });
    expect(await processesOfTask(orphaned)).toEqual([]);
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });

    for (const d of [restarted, survivor]) d.signal('SIGTERM');
    expect(await within(10_000, 'the daemons to drain', Promise.all([restarted.exited, survivor.exited]))).toEqual([
      0, 0,
    ]);
  });

  it('drains on SIGTERM: finishes and reports the start it runs, then exits 0; a second signal exits at once', async () => {
    const draining = daemon('draining');
    await draining.waitFor((l) => l.msg === 'reconciled');
    const finished = await createTask('finished', 'slow');
    await draining.waitFor((l) => l.msg === 'job started' && l.taskId === finished);
    draining.signal('SIGTERM');
    expect(await within(15_000, 'the daemon to drain', draining.exited)).toBe(0);
    expect(draining.lines.find(jobEnd(finished))).toMatchObject({ msg: 'job succeeded' });
    expect(draining.lines.at(-1)).toMatchObject({ msg: 'provisioner stopped' });
    const active = await whenStatus(finished, 'active', 5_000);
    expect(await getJson(`${active.agentUrl}/status`)).toMatchObject({ agent_type: 'demo' });

    const impatient = daemon('impatient');
    const cut = await createTask('cut', 'slow');
    await impatient.waitFor((l) => l.msg === 'job started' && l.taskId === cut);
    impatient.signal('SIGTERM');
    await impatient.waitFor((l) => l.msg.startsWith('stopping'));
    impatient.signal('SIGTERM');
    expect(await within(1_000, 'the daemon to exit at once', impatient.exited)).toBe(143);
    expect(impatient.lines.some(jobEnd(cut))).toBe(false);
    await whenStatus(cut, 'error', 15_000); // its job went stale
  });
});
