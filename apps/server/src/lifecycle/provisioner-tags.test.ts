import { randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { testProvisionerDir } from '../../test/paths.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { listAuditLogs } from '../db/audit.ts';
import { createLogger } from '../logger.ts';
import { createTemplate, getTemplate, updateTemplate } from '../templates/templates.ts';
import { acquireBuildJob } from './jobs.ts';
import { startBuiltinProvisioner } from './provisioner.ts';
import { noteProvisioner, unservedJobs } from './provisioners.ts';
import { createTask, getTask } from './tasks.ts';

// Several hosts: a template's provisioner tags route its builds to the provisioners having them all.
describe.each(testBackends())('provisioner tags on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });
  const command = { driver: 'command', settings: { start: 'true', stop: 'true' } };

  /** A new template with these tags, and a task of it whose first start is now pending. */
  async function taskOn(tags: Record<string, string>): Promise<string> {
    const admin = await h.member('admin');
    const template = `t-${randomUUID().slice(0, 8)}`;
    await createTemplate(h.app, admin, template, { ...command, provisionerTags: tags });
    const { task } = await createTask(h.app, h.alice, { name: `t-${randomUUID()}`, prompt: 'p', template });
    return task.id;
  }

  it('hands a job only to a provisioner having every tag of its template; an untagged one takes only untagged jobs', async () => {
    await h.settle();
    // Oldest first: the jobs no one below can take come first, and hold up none behind them.
    const onC = await taskOn({ host: 'c' });
    const gpuB = await taskOn({ host: 'b', gpu: 'true' });
    const onA = await taskOn({ host: 'a' });
    const anywhere = await taskOn({});

    // Without tags: the untagged template's job alone.
    expect(await acquireBuildJob(h.app, 'untagged')).toMatchObject({ taskId: anywhere });
    expect(await acquireBuildJob(h.app, 'untagged', { tags: {} })).toBeNull();
    // host=b lacks gpu=true; a wrong value is no match.
    expect(await acquireBuildJob(h.app, 'b', { tags: { host: 'b' } })).toBeNull();
    expect(await acquireBuildJob(h.app, 'b-cpu', { tags: { host: 'b', gpu: 'false' } })).toBeNull();
    // More tags than the template's are fine.
    expect(await acquireBuildJob(h.app, 'b-gpu', { tags: { host: 'b', gpu: 'true', zone: 'x' } })).toMatchObject({
      taskId: gpuB,
    });
    expect(await acquireBuildJob(h.app, 'a', { tags: { host: 'a' } })).toMatchObject({ taskId: onA });
    expect(await acquireBuildJob(h.app, 'a', { tags: { host: 'a' } })).toBeNull();

    const pending = await h.db
      .selectFrom('workspace_builds')
      .innerJoin('tasks', 'tasks.workspace_id', 'workspace_builds.workspace_id')
      .where('tasks.id', '=', onC)
      .select(['job_status', 'provisioner_id'])
      .execute();
    expect(pending).toEqual([{ job_status: 'pending', provisioner_id: null }]);
    expect(await acquireBuildJob(h.app, 'c', { tags: { host: 'c' } })).toMatchObject({ taskId: onC });
  });

  it('runs, built in and tagged by HIATUS_BUILTIN_PROVISIONER_TAGS, the jobs of templates with its tags and untagged ones, no others', async () => {
    await h.settle();
    const host = `y-${randomUUID().slice(0, 8)}`;
    const admin = await h.member('admin');
    // A start that prints a loopback agentUrl: no agent need answer for the job to succeed.
    const echo = { driver: 'command', settings: { start: `echo '{"agentUrl": "http://127.0.0.1:9"}'`, stop: 'true' } };
    const made: Record<string, string> = {};
    for (const [label, tags] of [
      ['mine', { host }],
      ['other', { host: `${host}-elsewhere` }],
      ['untagged', {}],
    ] as const) {
      const template = `t-${randomUUID().slice(0, 8)}`;
      await createTemplate(h.app, admin, template, { ...echo, provisionerTags: tags });
      made[label] = (await createTask(h.app, h.alice, { name: `t-${randomUUID()}`, prompt: 'p', template })).task.id;
    }
    const { tags } = loadConfig({ HIATUS_BUILTIN_PROVISIONER_TAGS: `host=${host},zone=x` }).provisioner;
    const stop = startBuiltinProvisioner(h.app, {
      dataDir: testProvisionerDir,
      pollIntervalMs: 100,
      staleAfterMs: 60_000,
      tags,
      log: createLogger('silent'),
    });
    try {
      await vi.waitFor(
        async () => {
          expect((await getTask(h.app, h.alice, made.mine!)).status).toBe('active');
          expect((await getTask(h.app, h.alice, made.untagged!)).status).toBe('active');
        },
        { timeout: 60_000, interval: 50 },
      );
    } finally {
      await stop();
    }
    expect((await getTask(h.app, h.alice, made.other!)).latestBuild).toMatchObject({ jobStatus: 'pending' });
    // It counts as connected with its tags: its templates' jobs are not said to wait for nobody.
    const seen = await h.db
      .selectFrom('provisioner_daemons')
      .where('name', '=', `builtin-${process.pid}`)
      .select('tags')
      .execute();
    expect(seen).toEqual([{ tags: { host, zone: 'x' } }]);
    await acquireBuildJob(h.app, 'cleanup', { tags: { host: `${host}-elsewhere` } });
  });

  it('says, once, which pending jobs no provisioner seen lately can take, until one with their tags asks', async () => {
    const host = `z-${randomUUID().slice(0, 8)}`;
    const taskId = await taskOn({ host, gpu: 'true' });
    await noteProvisioner(h.app, { keyId: null, name: `${host}-cpu` }, { host });
    const reported = new Set<string>();
    const [notice, ...others] = (await unservedJobs(h.app, reported, 60_000)).filter((n) => n.taskId === taskId);
    expect(others).toEqual([]);
    expect(notice).toMatchObject({ tags: { host, gpu: 'true' } });
    expect(notice!.message).toMatch(
      new RegExp(
        `^build ${notice!.buildId} of template t-\\S+ waits: no provisioner with tags gpu=true host=${host} is connected \\(connected: .*${host}-cpu \\(host=${host}\\).*\\); start one with --tag gpu=true --tag host=${host}$`,
      ),
    );
    // Said once; a provisioner seen longer ago than the window does not count.
    expect((await unservedJobs(h.app, reported, 60_000)).map((n) => n.taskId)).not.toContain(taskId);
    await noteProvisioner(h.app, { keyId: null, name: `${host}-gpu` }, { host, gpu: 'true', zone: 'x' });
    await h.db
      .updateTable('provisioner_daemons')
      .set({ last_seen_at: new Date(Date.now() - 120_000) })
      .where('name', '=', `${host}-gpu`)
      .execute();
    expect((await unservedJobs(h.app, new Set(), 60_000)).map((n) => n.taskId)).toContain(taskId);
    // Once it asks again, the job is no longer said, and forgotten as reported.
    await noteProvisioner(h.app, { keyId: null, name: `${host}-gpu` }, { host, gpu: 'true', zone: 'x' });
    expect((await unservedJobs(h.app, reported, 60_000)).map((n) => n.taskId)).not.toContain(taskId);
    expect(reported.has(notice!.buildId)).toBe(false);
    expect(await acquireBuildJob(h.app, `${host}-gpu`, { tags: { host, gpu: 'true' } })).toMatchObject({ taskId });
  });

  it("keeps a template version's tags through updates that do not name them, replaces them whole when given, and audits them", async () => {
    const admin = await h.member('admin');
    const name = `t-${randomUUID().slice(0, 8)}`;
    const created = await createTemplate(h.app, admin, name, {
      ...command,
      provisionerTags: { host: 'a', gpu: 'true' },
    });
    expect(created.provisionerTags).toEqual({ host: 'a', gpu: 'true' });
    expect(await updateTemplate(h.app, admin, name, { description: 'same hosts' })).toMatchObject({
      version: 2,
      provisionerTags: { host: 'a', gpu: 'true' },
    });
    expect(await updateTemplate(h.app, admin, name, { provisionerTags: { host: 'b' } })).toMatchObject({
      version: 3,
      provisionerTags: { host: 'b' },
    });
    expect((await updateTemplate(h.app, admin, name, { provisionerTags: {} })).provisionerTags).toEqual({});
    // Each version keeps its own: a task of version 1 is still built on host a.
    expect((await getTemplate(h.app, name, 1)).provisionerTags).toEqual({ host: 'a', gpu: 'true' });
    // Each version's audit record says how its tags changed, nothing for the version that kept them.
    const changes = [];
    for (const version of [1, 2, 3, 4]) {
      const { id } = await getTemplate(h.app, name, version);
      const { items } = await listAuditLogs(h.db, { resourceId: id, limit: 10 });
      changes.push(items.map((record) => (record.diff as { provisionerTags?: unknown }).provisionerTags));
    }
    expect(changes).toEqual([
      [{ from: {}, to: { host: 'a', gpu: 'true' } }],
      [undefined],
      [{ from: { host: 'a', gpu: 'true' }, to: { host: 'b' } }],
      [{ from: { host: 'b' }, to: {} }],
    ]);
  });
});

describe('HIATUS_BUILTIN_PROVISIONER_TAGS', () => {
  it('gives the built-in provisioner no tags by default, and those it names', () => {
    expect(loadConfig({}).provisioner.tags).toEqual({});
    expect(loadConfig({ HIATUS_BUILTIN_PROVISIONER_TAGS: 'host=a, gpu=true' }).provisioner.tags).toEqual({
      host: 'a',
      gpu: 'true',
    });
  });

  it.each([
    ['host', '"host" is not a tag (name=value, such as host=a)'],
    ['host=a,,gpu=true', '"" is not a tag'],
    ['host=a b', '"host=a b" is not a tag'],
    ['host=a,host=b', 'the tag host is given twice'],
  ])('refuses %j, naming the variable', (value, message) => {
    const attempt = () => loadConfig({ HIATUS_BUILTIN_PROVISIONER_TAGS: value });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(`HIATUS_BUILTIN_PROVISIONER_TAGS: ${message}`);
  });
});
