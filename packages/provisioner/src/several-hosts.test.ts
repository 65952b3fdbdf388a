import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unservedJobs } from '../../../apps/server/src/lifecycle/provisioners.ts';
import { apiClient } from '../../../apps/server/test/api-client.ts';
import { postgresServerUrl } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer } from '../../../apps/server/test/test-server.ts';
import { type DaemonProcess, killEveryDaemon, type LogLine, startDaemon, within } from '../test/daemon-process.ts';
import { demoAgent, eventually, killTaskProcesses } from '../test/harness.ts';
import { parseDaemonArgs } from './daemon-cli.ts';

afterAll(killEveryDaemon);

describe('the daemon tag flags', () => {
  const env = { HIATUS_URL: 'http://127.0.0.1:8080', HIATUS_TOKEN: 'hp_key' };
  const parse = (args: string[], vars: Record<string, string> = env) => parseDaemonArgs(args, vars, '/srv');

  it('reads --tag name=value (repeated) or HIATUS_PROVISIONER_TAGS, the flags replacing the variable', () => {
    expect(parse(['--tag', 'host=a', '--tag', 'gpu=true'])).toMatchObject({
      options: { tags: { host: 'a', gpu: 'true' } },
    });
    const both = { ...env, HIATUS_PROVISIONER_TAGS: 'host=b, zone=eu-1' };
    expect(parse([], both)).toMatchObject({ options: { tags: { host: 'b', zone: 'eu-1' } } });
    expect(parse(['--tag', 'host=a'], both)).toMatchObject({ options: { tags: { host: 'a' } } });
    expect(parse([])).not.toHaveProperty('options.tags');
  });

  it.each([
    [['--tag', 'host'], '--tag: "host" is not a tag'],
    [['--tag', 'host='], '--tag: "host=" is not a tag'],
    [['--tag', '=a'], '--tag: "=a" is not a tag'],
    [['--tag', 'host=a=b'], '--tag: "host=a=b" is not a tag'],
    [['--tag', 'host=a', '--tag', 'host=b'], '--tag: the tag host is given twice'],
  ])('refuses %j', (args, error) => {
    expect(parse(args)).toEqual({ error: expect.stringContaining(error) });
  });

  it('refuses a bad HIATUS_PROVISIONER_TAGS', () => {
    expect(parse([], { ...env, HIATUS_PROVISIONER_TAGS: 'host=a,,gpu' })).toEqual({
      error: expect.stringContaining('HIATUS_PROVISIONER_TAGS: "" is not a tag'),
    });
  });
});

// Several hosts, on one machine: two daemons, each with a data directory of its own (its "host") and
// different tags, serving one server. A template's tags decide which daemon runs its tasks.
describe.runIf(postgresServerUrl())('two daemons with different tags', () => {
  let running: TestServer | undefined;
  let admin: ReturnType<typeof apiClient>;
  const dirs: string[] = [];
  const taskIds: string[] = [];
  let hostA: DaemonProcess;
  let hostB: DaemonProcess;

  beforeAll(async () => {
    running = await startTestServer('postgres', {
      HIATUS_BUILTIN_PROVISIONER: 'false',
      HIATUS_PROVISIONER_STALE_MS: '5000',
      HIATUS_PROVISIONER_POLL_MS: '200',
    });
    admin = apiClient(running.server.url, running.adminToken);
    const settings = { command: [process.execPath, demoAgent], env: { DEMO_WORK_MS: '50' } };
    for (const [name, provisionerTags] of [
      ['on-a', { host: 'a' }],
      ['on-b', { host: 'b' }],
      ['on-b-gpu', { host: 'b', gpu: 'true' }],
      ['anywhere', {}],
    ] as const) {
      await admin.templates.create.mutate({ name, driver: 'process', settings, provisionerTags });
    }
    const key = (await admin.apiKeys.create.mutate({ scope: 'provisioner', name: 'hosts' })).key;
    const daemon = async (id: string, args: string[], env: Record<string, string> = {}) => {
      const dataDir = await mkdtemp(join(tmpdir(), `hiatus-${id}-`));
      dirs.push(dataDir);
      const flags = ['--url', running!.server.url, '--id', id, '--data-dir', dataDir, '--wait-ms', '1000'];
      return startDaemon([...flags, ...args], { HIATUS_TOKEN: key, ...env });
    };
    hostA = await daemon('host-a', ['--tag', 'host=a']);
    // B's tags from the environment, as a unit file would set them.
    hostB = await daemon('host-b', [], { HIATUS_PROVISIONER_TAGS: 'host=b,zone=eu' });
    await Promise.all([hostA, hostB].map((d) => d.waitFor((l) => l.msg === 'reconciled')));
  }, 120_000);

  afterAll(async () => {
    await killEveryDaemon();
    for (const taskId of taskIds) await killTaskProcesses(taskId);
    await running?.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  async function createTask(name: string, template: string): Promise<string> {
    const { task } = await admin.tasks.create.mutate({ name, prompt: `do ${name}`, template });
    taskIds.push(task.id);
    return task.id;
  }

  const whenStatus = (taskId: string, status: string) =>
    eventually(async () => expect((await admin.tasks.get.query({ id: taskId })).status).toBe(status));

  /** Which provisioner held each of the task's build jobs, oldest first, read from the job rows. */
  async function holders(taskId: string): Promise<Array<{ transition: string; holder: string | null }>> {
    const rows = await running!.server.app.db
      .selectFrom('workspace_builds')
      .innerJoin('tasks', 'tasks.workspace_id', 'workspace_builds.workspace_id')
      .where('tasks.id', '=', taskId)
      .orderBy('build_number')
      .select(['transition', 'provisioner_id as holder'])
      .execute();
    return rows;
  }

  /** The ids of the tasks whose jobs `daemon` logged. */
  const jobsLogged = (daemon: DaemonProcess) =>
    new Set(
      daemon.lines.filter((l: LogLine) => l.msg === 'job succeeded' || l.msg === 'job failed').map((l) => l.taskId),
    );

  it('logs its tags at start', async () => {
    expect(await hostA.waitFor((l) => l.msg === 'provisioner started')).toMatchObject({ tags: { host: 'a' } });
    expect(await hostB.waitFor((l) => l.msg === 'provisioner started')).toMatchObject({
      tags: { host: 'b', zone: 'eu' },
    });
  });

  it('runs host=a templates on A only, host=b on B only, untagged ones on either; a daemon without the tags never gets the job', async () => {
    // Waiting first, created first: a template neither daemon has every tag of (B lacks gpu=true).
    const unserved = await createTask('needs-a-gpu', 'on-b-gpu');
    const onA = [await createTask('a-1', 'on-a'), await createTask('a-2', 'on-a')];
    const onB = [await createTask('b-1', 'on-b'), await createTask('b-2', 'on-b')];
    const anywhere = [await createTask('any-1', 'anywhere'), await createTask('any-2', 'anywhere')];
    for (const taskId of [...onA, ...onB, ...anywhere]) await whenStatus(taskId, 'active');

    for (const taskId of onA) expect(await holders(taskId)).toEqual([{ transition: 'start', holder: 'host-a' }]);
    for (const taskId of onB) expect(await holders(taskId)).toEqual([{ transition: 'start', holder: 'host-b' }]);
    for (const taskId of anywhere) {
      expect((await holders(taskId))[0]?.holder).toMatch(/^host-[ab]$/);
    }
    // The daemons' own logs agree: neither ran a job of the other's host.
    await eventually(async () => expect(jobsLogged(hostA).size + jobsLogged(hostB).size).toBe(6));
    for (const taskId of onA)
      expect([jobsLogged(hostA).has(taskId), jobsLogged(hostB).has(taskId)]).toEqual([true, false]);
    for (const taskId of onB)
      expect([jobsLogged(hostA).has(taskId), jobsLogged(hostB).has(taskId)]).toEqual([false, true]);

    // Every job created after it has been taken, and it is still pending, held by no one.
    expect(await holders(unserved)).toEqual([{ transition: 'start', holder: null }]);
    expect((await admin.tasks.get.query({ id: unserved })).latestBuild).toMatchObject({ jobStatus: 'pending' });
    expect([...jobsLogged(hostA), ...jobsLogged(hostB)]).not.toContain(unserved);
    expect([...hostA.lines, ...hostB.lines].some((l) => l.taskId === unserved)).toBe(false);
    // The server says why it waits (its log line's text), naming the daemons connected and their tags.
    const notices = await unservedJobs(running!.server.app, new Set());
    expect(notices.map((n) => n.taskId)).toEqual([unserved]);
    expect(notices[0]!.message).toMatch(
      /^build \S+ of template on-b-gpu waits: no provisioner with tags gpu=true host=b is connected \(connected: host-a \(host=a\), host-b \(host=b zone=eu\)\); start one with --tag gpu=true --tag host=b$/,
    );
  });

  it("sends a task's pause and resume to the host that holds its workspace", async () => {
    const taskId = await createTask('a-walk', 'on-a');
    await whenStatus(taskId, 'active');
    await admin.tasks.pause.mutate({ id: taskId });
    await whenStatus(taskId, 'paused');
    await admin.tasks.resume.mutate({ id: taskId });
    await whenStatus(taskId, 'active');
    expect(await holders(taskId)).toEqual([
      { transition: 'start', holder: 'host-a' },
      { transition: 'stop', holder: 'host-a' },
      { transition: 'start', holder: 'host-a' },
    ]);
  });

  it('drains both daemons on SIGTERM', async () => {
    hostA.signal('SIGTERM');
    hostB.signal('SIGTERM');
    expect(await within(60_000, 'the daemons to drain', Promise.all([hostA.exited, hostB.exited]))).toEqual([0, 0]);
  });
});
