import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../server/test/api-client.ts';
import { testBackends } from '../../server/test/databases.ts';
import { FakeAgent } from '../../server/test/fake-agent.ts';
import { startTestServer, type TestServer } from '../../server/test/test-server.ts';
import {
  chromiumOrSkip,
  ensureConsoleBuilt,
  launchChromium,
  newContext,
  repoDir,
  signIn,
  slow,
  watchedPage,
} from './browser.ts';

const chromiumPath = chromiumOrSkip();

/** With HIATUS_SCREENSHOTS=1 (`pnpm screenshots`), the walk leaves its screenshots in docs/. */
const screenshotsDir = process.env.HIATUS_SCREENSHOTS === '1' ? path.join(repoDir, 'docs') : null;

describe.skipIf(!chromiumPath)('the web console in headless chromium', () => {
  let server: TestServer;
  let agent: FakeAgent;
  let browser: Browser;

  beforeAll(async () => {
    await ensureConsoleBuilt();
    // PostgreSQL when the run has it, as the service runs in production; PGlite otherwise.
    server = await startTestServer(testBackends()[0]!);
    agent = await new FakeAgent().say(4).start();
    browser = await launchChromium(chromiumPath!);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    await server?.close();
  });

  it('signs in, creates a task, pauses it, reads its snapshot, resumes it and talks to it live', async () => {
    const url = server.server.url;
    const admin = apiClient(url, server.adminToken);
    const context = await newContext(browser, { viewport: { width: 1200, height: 860 } });
    const { page, errors } = await watchedPage(context);
    await signIn(page, url, server.adminToken);
    expect(await page.evaluate(() => sessionStorage.getItem('hiatus.apiKey'))).toBe(server.adminToken);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);

    // Create through the form; the console goes to the new task's page.
    await page.getByText('New task').click();
    await page.getByLabel('Name').fill('fix-ci');
    await page.getByLabel('Prompt').fill('Make CI green');
    await page.getByLabel('Agent URL').fill(agent.url);
    await page.getByRole('button', { name: 'Create the task' }).click();
    await page.getByRole('heading', { name: 'fix-ci', level: 1 }).waitFor();
    const taskId = page.url().split('/tasks/')[1]!;
    const status = page.getByTestId('task-status');
    await expect.poll(() => status.textContent(), slow).toBe('active');
    const source = page.getByTestId('log-source');
    await expect.poll(() => source.textContent(), slow).toBe('Live from the agent');
    await page.getByText('message 3').first().waitFor();

    // Pause: the watch stream brings the new status, and the log now comes from the snapshot.
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => status.textContent(), slow).toBe('paused');
    await expect.poll(() => source.textContent(), slow).toMatch(/^From the snapshot taken at .+/);
    await page.getByText('message 3').first().waitFor();
    expect(await page.getByRole('button', { name: 'Pause' }).count()).toBe(0);
    await page.getByRole('heading', { name: 'Builds' }).waitFor();
    await page.getByText('paused by hand').first().waitFor();
    if (screenshotsDir) {
      await mkdir(screenshotsDir, { recursive: true });
      await page.screenshot({ path: path.join(screenshotsDir, 'console-paused-task.png'), fullPage: true });
    }

    // The list shows it paused, with why, and follows a change made elsewhere without a reload.
    const other = await admin.tasks.create.mutate({ name: 'review-pr', prompt: 'Review #42', agentUrl: agent.url });
    // Opened at once, while review-pr may still be starting: a first start's end is no event, so the
    // list reads itself again while a task is starting, and shows it active once it is.
    const nav = page.getByRole('navigation', { name: 'Main' });
    await nav.getByRole('link', { name: 'Tasks' }).click();
    const row = (name: string) => page.getByRole('row').filter({ has: page.getByRole('link', { name }) });
    await expect.poll(() => row('fix-ci').textContent(), slow).toMatch(/paused.*paused by hand/);
    await expect.poll(() => row('review-pr').textContent(), slow).toContain('active');
    await admin.tasks.pause.mutate({ id: other.task.id, wait: true });
    await expect.poll(() => row('review-pr').textContent(), slow).toContain('paused by hand');
    await admin.tasks.resume.mutate({ id: other.task.id, wait: true });
    await expect.poll(() => row('review-pr').textContent(), slow).toMatch(/active/);
    if (screenshotsDir) await page.screenshot({ path: path.join(screenshotsDir, 'console-tasks.png'), fullPage: true });
    await page.getByLabel('Status').selectOption('paused');
    await expect.poll(() => page.getByRole('row').count(), slow).toBe(2); // the header and fix-ci
    await row('fix-ci').waitFor();

    // Resume, and the log is live again; a message sent from the page reaches the agent.
    await row('fix-ci').getByRole('link').click();
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => status.textContent(), slow).toBe('active');
    await expect.poll(() => source.textContent(), slow).toBe('Live from the agent');
    await page.getByLabel(/^Message to the agent/).fill('Welcome back');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page
      .getByRole('status')
      .filter({ hasText: /^(Sent: the agent has it|Queued in the inbox)/ })
      .waitFor(slow);
    await expect.poll(() => agent.received, slow).toContain('Welcome back');
    await page.getByText('Welcome back').first().waitFor(slow);
    expect(page.url()).toBe(`${url}/tasks/${taskId}`);

    // The admin pages answer.
    await nav.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('cell', { name: 'task.pause' }).first().waitFor(slow);
    await nav.getByRole('link', { name: 'Telemetry' }).click();
    await page.getByRole('img', { name: 'Pauses by reason' }).waitFor(slow);

    expect(errors).toEqual([]);
    await context.close();
  }, 180_000);

  it("keeps a member to their own tasks, a read-only key's page free of buttons, and says a refusal plainly", async () => {
    const url = server.server.url;
    const admin = apiClient(url, server.adminToken);
    const { task } = await admin.tasks.create.mutate({ name: 'admins-only', prompt: '', agentUrl: agent.url });
    const bob = await admin.users.create.mutate({ username: 'bob' });
    const bobKey = (await admin.apiKeys.create.mutate({ userId: bob.id })).key;
    const readKey = (await admin.apiKeys.create.mutate({ scope: 'read' })).key;

    const memberContext = await newContext(browser, { viewport: { width: 390, height: 800 } });
    const member = await watchedPage(memberContext);
    await signIn(member.page, url, bobKey);
    await member.page.getByText('No tasks.').waitFor(slow);
    // A phone's width: nothing sticks out sideways.
    expect(await member.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    expect(await member.page.getByRole('link', { name: 'Audit log' }).count()).toBe(0);
    await member.page.goto(`${url}/tasks/${task.id}`);
    await member.page
      .getByRole('alert')
      .filter({ hasText: 'This task does not exist, or it is not yours to see.' })
      .waitFor(slow);
    expect(await member.page.getByText('admins-only').count()).toBe(0);
    // Chromium reports the refused read's HTTP status (404) as a console error: that one is expected.
    expect(member.errors.filter((e) => !/status of 404/.test(e))).toEqual([]);
    await memberContext.close();

    const readerContext = await newContext(browser);
    const reader = await watchedPage(readerContext);
    await signIn(reader.page, url, readKey);
    expect(await reader.page.getByText('New task').count()).toBe(0);
    await reader.page.getByRole('link', { name: 'admins-only' }).click();
    await expect.poll(() => reader.page.getByTestId('task-status').textContent(), slow).toBe('active');
    await reader.page.getByTestId('log-source').waitFor(slow);
    for (const name of ['Pause', 'Resume', 'Delete', 'Send']) {
      expect(await reader.page.getByRole('button', { name, exact: true }).count(), name).toBe(0);
    }
    expect(reader.errors).toEqual([]);
    await readerContext.close();

    // A refusal reads as a sentence: the page still shows the task active (its watch stream held back)
    // when someone else has paused it.
    const staleContext = await newContext(browser);
    const stale = await watchedPage(staleContext);
    await stale.page.route('**/trpc/tasks.watch**', () => undefined);
    await signIn(stale.page, url, server.adminToken);
    await stale.page.goto(`${url}/tasks/${task.id}`);
    await expect.poll(() => stale.page.getByTestId('task-status').textContent(), slow).toBe('active');
    await admin.tasks.pause.mutate({ id: task.id, wait: true });
    await stale.page.getByRole('button', { name: 'Pause', exact: true }).click();
    await stale.page.getByRole('alert').filter({ hasText: 'This task is already paused.' }).waitFor(slow);
    expect(stale.errors.filter((e) => !/status of 409/.test(e))).toEqual([]);
    await staleContext.close();
  }, 120_000);
});
