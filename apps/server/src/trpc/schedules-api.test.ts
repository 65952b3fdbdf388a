import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, codeOf } from '../../test/api-client.ts';
import { testBackends } from '../../test/databases.ts';
import { FakeAgent } from '../../test/fake-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../test/test-server.ts';
import { loadConfig } from '../config.ts';

const office = {
  timeZone: 'Europe/Berlin',
  windows: [
    {
      days: ['mon' as const, 'tue' as const, 'wed' as const, 'thu' as const, 'fri' as const],
      start: '08:00',
      end: '19:00',
    },
  ],
};

describe.each(testBackends())('schedules and retention through the API on %s', (backend) => {
  let running: TestServer;
  let agent: FakeAgent;
  let admin: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    // The loops stay out of the way: these tests only set and read policies.
    running = await startTestServer(backend, { HIATUS_SCHEDULE_INTERVAL_MS: '0' });
    agent = await new FakeAgent().start();
    admin = apiClient(running.server.url, testAdminToken);
  });
  afterAll(async () => {
    await agent.stop();
    await running.close();
  });

  it('sets a template schedule and retention, keeps them in the next version, and clears them with null', async () => {
    const created = await admin.templates.create.mutate({
      name: 'office-hours',
      driver: 'command',
      settings: { start: 'true', stop: 'true' },
      schedule: office,
      pausedRetentionDays: 14,
    });
    expect(created).toMatchObject({ version: 1, schedule: office, pausedRetentionDays: 14 });
    const next = await admin.templates.update.mutate({ name: 'office-hours', description: 'same hours' });
    expect(next).toMatchObject({ version: 2, schedule: office, pausedRetentionDays: 14 });
    const cleared = await admin.templates.update.mutate({
      name: 'office-hours',
      schedule: null,
      pausedRetentionDays: null,
    });
    expect(cleared).toMatchObject({ version: 3, schedule: null, pausedRetentionDays: null });
  });

  it("sets a task's own schedule at creation and with update, audited, and null clears it", async () => {
    const { task } = await admin.tasks.create.mutate({
      name: 'scheduled',
      prompt: 'p',
      agentUrl: agent.url,
      schedule: office,
    });
    expect(task.schedule).toEqual(office);
    const utc = { timeZone: 'UTC', windows: [{ days: ['sat' as const], start: '00:00', end: '24:00' }] };
    expect((await admin.tasks.update.mutate({ id: task.id, schedule: utc })).schedule).toEqual(utc);
    // The same schedule again changes nothing and writes nothing.
    await admin.tasks.update.mutate({ id: task.id, schedule: utc });
    expect((await admin.tasks.update.mutate({ id: task.id, schedule: null })).schedule).toBeNull();
    const audit = await admin.audit.list.query({ resourceId: task.id });
    const updates = audit.items.filter((r) => r.action === 'task.update');
    expect(updates).toHaveLength(2);
  });

  it('refuses a bad schedule with BAD_REQUEST, changing nothing', async () => {
    const { task } = await admin.tasks.create.mutate({
      name: 'refused',
      prompt: 'p',
      agentUrl: agent.url,
      schedule: office,
    });
    const bad = [
      { ...office, timeZone: 'Europe/Atlantis' },
      { ...office, windows: [] },
      { ...office, windows: [{ days: ['mon' as const], start: '19:00', end: '08:00' }] },
      { ...office, windows: [{ days: ['mon' as const], start: '8:00', end: '19:00' }] },
    ];
    for (const schedule of bad) {
      expect(await codeOf(admin.tasks.update.mutate({ id: task.id, schedule }))).toBe('BAD_REQUEST');
      expect(
        await codeOf(
          admin.tasks.create.mutate({ name: `bad-${Math.random()}`, prompt: 'p', agentUrl: agent.url, schedule }),
        ),
      ).toBe('BAD_REQUEST');
      expect(
        await codeOf(
          admin.templates.create.mutate({
            name: 'bad-hours',
            driver: 'command',
            settings: { start: 'true' },
            schedule,
          }),
        ),
      ).toBe('BAD_REQUEST');
    }
    expect(
      await codeOf(admin.templates.create.mutate({ name: 'bad-days', driver: 'command', pausedRetentionDays: -1 })),
    ).toBe('BAD_REQUEST');
    expect((await admin.tasks.get.query({ id: task.id })).schedule).toEqual(office);
    expect(await codeOf(admin.templates.get.query({ name: 'bad-hours' }))).toBe('NOT_FOUND');
    expect((await admin.tasks.list.query({})).items.filter((t) => t.name.startsWith('bad-'))).toEqual([]);
  });
});

describe('schedule and retention settings', () => {
  it('default to schedules every minute and retention off, and refuse bad values naming the variable', () => {
    expect(loadConfig({})).toMatchObject({
      schedules: { intervalMs: 60_000, warningSeconds: 300 },
      pausedRetention: { defaultDays: 0, warningSeconds: 86_400 },
    });
    expect(
      loadConfig({
        HIATUS_PAUSED_RETENTION_DAYS: '30',
        HIATUS_RETENTION_WARNING_SECONDS: '0',
        HIATUS_SCHEDULE_INTERVAL_MS: '0',
      }),
    ).toMatchObject({ schedules: { intervalMs: 0 }, pausedRetention: { defaultDays: 30, warningSeconds: 0 } });
    for (const [name, value] of [
      ['HIATUS_PAUSED_RETENTION_DAYS', '-1'],
      ['HIATUS_PAUSED_RETENTION_DAYS', 'a week'],
      ['HIATUS_RETENTION_WARNING_SECONDS', '1.5'],
      ['HIATUS_SCHEDULE_INTERVAL_MS', '-5'],
      ['HIATUS_SCHEDULE_PAUSE_WARNING_SECONDS', 'x'],
    ] as const) {
      expect(() => loadConfig({ [name]: value })).toThrow(name);
    }
  });
});
