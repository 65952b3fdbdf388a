import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { workspaceDir } from '../../../packages/provisioner/src/data-dir.ts';
import { repoRoot } from '../src/config.ts';
import { findTemplate } from '../src/db/templates.ts';
import { apiClient, codeOf } from './api-client.ts';
import { testBackends } from './databases.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const demoAgent = path.join(repoRoot, 'packages/provisioner/demo-agent/agent.mjs');
const secret = 'sk-ant-write-only-0123456789abcdef';
type Api = ReturnType<typeof apiClient>;

/** The template's agent writes the secret it was given into its working directory, then runs the demo agent. */
const settings = {
  command: `printf %s "$ANTHROPIC_API_KEY" > secret-seen && exec node ${JSON.stringify(demoAgent)}`,
  env: { ANTHROPIC_API_KEY: secret, DEMO_WORK_MS: '100' },
};

// Template env values are write-only: every reader sees the names, the driver alone gets the values.
// On the first backend of the run (PostgreSQL when there is one), with the built-in provisioner.
describe('template secrets: reads show env names, never values', () => {
  let running: TestServer;
  let dataDir: string;
  let admin: Api;
  let member: Api;
  let readOnly: Api;
  const auth = (token: string) => ({ authorization: `Bearer ${token}` });
  let readOnlyToken: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-secrets-'));
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_PROVISIONER_DIR: dataDir,
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
    admin = apiClient(running.server.url, running.adminToken);
    const user = await admin.users.create.mutate({ username: 'reader' });
    member = apiClient(running.server.url, (await admin.apiKeys.create.mutate({ userId: user.id })).key);
    readOnlyToken = (await admin.apiKeys.create.mutate({ userId: user.id, scope: 'read' })).key;
    readOnly = apiClient(running.server.url, readOnlyToken);
  }, 60_000);

  afterAll(async () => {
    await running?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('answers create, get and list with the names alone, to an admin, a member and a read-only key', async () => {
    const created = await admin.templates.create.mutate({ name: 'secretive', driver: 'process', settings });
    expect(created.envNames).toEqual(['ANTHROPIC_API_KEY', 'DEMO_WORK_MS']);
    expect(created.settings).toEqual({ command: settings.command });
    expect(JSON.stringify(created)).not.toContain(secret);

    for (const api of [admin, member, readOnly]) {
      const template = await api.templates.get.query({ name: 'secretive' });
      expect(template).toMatchObject({
        name: 'secretive',
        version: 1,
        envNames: ['ANTHROPIC_API_KEY', 'DEMO_WORK_MS'],
      });
      expect(template.settings).toEqual({ command: settings.command });
      const listed = await api.templates.list.query();
      expect(listed.find((t) => t.name === 'secretive')?.envNames).toEqual(['ANTHROPIC_API_KEY', 'DEMO_WORK_MS']);
      expect(JSON.stringify([template, listed])).not.toContain(secret);
    }
    // Stored as given: the values are there for the driver.
    const stored = await findTemplate(running.server.app.db, 'secretive');
    expect(stored?.settings).toEqual(settings);
  });

  it('serves REST and the OpenAPI document with the names alone', async () => {
    const get = (route: string) => fetch(`${running.server.url}/api/v1${route}`, { headers: auth(readOnlyToken) });
    const one = await get('/templates/secretive');
    expect(one.status).toBe(200);
    const text = await one.text();
    expect(text).not.toContain(secret);
    expect(JSON.parse(text)).toMatchObject({ envNames: ['ANTHROPIC_API_KEY', 'DEMO_WORK_MS'], settings: {} });
    expect(JSON.parse(text).settings).not.toHaveProperty('env');
    const all = await get('/templates');
    expect(await all.text()).not.toContain(secret);

    const openapi = (await (await fetch(`${running.server.url}/openapi.json`)).json()) as {
      components: {
        schemas: Record<string, { properties: Record<string, Record<string, unknown>>; required: string[] }>;
      };
    };
    const schema = openapi.components.schemas.Template!;
    expect(schema.properties.envNames).toMatchObject({ type: 'array', items: { type: 'string' } });
    expect(schema.required).toContain('envNames');
    expect(schema.properties.settings?.description).toMatch(/without `env`/);
  });

  it('keeps the values an update does not give, sets and removes single names, and audits names only', async () => {
    const v2 = await admin.templates.update.mutate({ name: 'secretive', description: 'no env given' });
    expect(v2.envNames).toEqual(['ANTHROPIC_API_KEY', 'DEMO_WORK_MS']);
    const v3 = await admin.templates.update.mutate({
      name: 'secretive',
      settings: { command: settings.command, startTimeoutMs: 60_000 }, // settings without env: the env stays
    });
    expect(v3.envNames).toEqual(['ANTHROPIC_API_KEY', 'DEMO_WORK_MS']);
    const rotated = `${secret}-rotated`;
    const v4 = await admin.templates.update.mutate({
      name: 'secretive',
      settings: { command: settings.command, env: { ANTHROPIC_API_KEY: rotated, REGION: 'eu', DEMO_WORK_MS: null } },
    });
    expect(v4).toMatchObject({ version: 4, envNames: ['ANTHROPIC_API_KEY', 'REGION'] });
    expect(JSON.stringify(v4)).not.toContain(rotated);

    const db = running.server.app.db;
    expect((await findTemplate(db, 'secretive', 3))?.settings).toEqual({ ...settings, startTimeoutMs: 60_000 });
    expect((await findTemplate(db, 'secretive', 4))?.settings).toEqual({
      command: settings.command,
      env: { ANTHROPIC_API_KEY: rotated, REGION: 'eu' },
    });

    const records = (await admin.audit.list.query({ limit: 100 })).items.filter(
      (r) => r.action.startsWith('template.') && (r.diff as { name?: string } | null)?.name === 'secretive',
    );
    expect(JSON.stringify(records)).not.toContain(secret);
    const diffs = records.map((r) => r.diff).reverse(); // oldest first
    expect(diffs).toEqual([
      {
        name: 'secretive',
        version: 1,
        driver: 'process',
        env: { added: ['ANTHROPIC_API_KEY', 'DEMO_WORK_MS'], changed: [], removed: [] },
      },
      { name: 'secretive', version: 2, driver: 'process' },
      { name: 'secretive', version: 3, driver: 'process' },
      {
        name: 'secretive',
        version: 4,
        driver: 'process',
        env: { added: ['REGION'], changed: ['ANTHROPIC_API_KEY'], removed: ['DEMO_WORK_MS'] },
      },
    ]);
  });

  it('hands the driver the values: the agent runs with the secret, which no task read shows', async () => {
    await admin.templates.update.mutate({
      name: 'secretive',
      settings: { command: settings.command, env: { ANTHROPIC_API_KEY: secret, REGION: null } },
    });
    expect(await codeOf(member.provisioner.acquire.mutate({ waitMs: 0 }))).toBe('FORBIDDEN');
    expect(await codeOf(readOnly.provisioner.acquire.mutate({ waitMs: 0 }))).toBe('FORBIDDEN');

    const { task } = await member.tasks.create.mutate({ name: 'secret-task', prompt: 'hello', template: 'secretive' });
    await vi.waitFor(async () => expect((await member.tasks.get.query({ id: task.id })).status).toBe('active'), {
      timeout: 60_000,
      interval: 50,
    });
    expect(await readFile(path.join(workspaceDir(dataDir, task.id), 'secret-seen'), 'utf8')).toBe(secret);

    const reads = await Promise.all([
      member.tasks.get.query({ id: task.id }),
      member.builds.list.query({ taskId: task.id }),
      member.events.list.query({ taskId: task.id }),
      admin.audit.list.query({ limit: 100 }),
    ]);
    expect(JSON.stringify(reads)).not.toContain(secret);
    await member.tasks.delete.mutate({ id: task.id });
    await vi.waitFor(
      async () => expect((await member.builds.list.query({ taskId: task.id })).items[0]?.jobStatus).toBe('succeeded'),
      { timeout: 60_000, interval: 50 },
    );
  });
});

// What hiatus-provisioner is handed over the API: the job carries the values, for provisioner keys only.
describe('template secrets: a provisioner key acquires the values with the job', () => {
  let running: TestServer;

  beforeAll(async () => {
    running = await startTestServer(testBackends()[0]!, { HIATUS_BUILTIN_PROVISIONER: 'false' });
  }, 60_000);
  afterAll(() => running?.close());

  it('gives the job the template env as stored, and the readers its names', async () => {
    const admin = apiClient(running.server.url, running.adminToken);
    const provisioner = apiClient(
      running.server.url,
      (await admin.apiKeys.create.mutate({ name: 'daemon', scope: 'provisioner' })).key,
    );
    await admin.templates.create.mutate({
      name: 'remote',
      driver: 'command',
      settings: { start: 'true', stop: 'true', env: { ANTHROPIC_API_KEY: secret } },
    });
    await admin.templates.update.mutate({ name: 'remote', description: 'the secret is kept' });
    const { task } = await admin.tasks.create.mutate({ name: 'remote-task', prompt: 'hi', template: 'remote' });

    expect(await codeOf(provisioner.templates.get.query({ name: 'remote' }))).toBe('FORBIDDEN');
    const job = await provisioner.provisioner.acquire.mutate({ waitMs: 0 });
    expect(job?.task?.id).toBe(task.id);
    expect(job?.template).toMatchObject({ version: 2, settings: { env: { ANTHROPIC_API_KEY: secret } } });
    await provisioner.provisioner.complete.mutate({ buildId: job!.build.id, error: 'not run in this test' });
  });
});
