import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient } from '../../server/test/api-client.ts';
import { testBackends } from '../../server/test/databases.ts';
import { startTestServer, type TestServer } from '../../server/test/test-server.ts';
import {
  chromiumOrSkip,
  ensureConsoleBuilt,
  launchChromium,
  newContext,
  signIn,
  slow,
  watchedPage,
} from './browser.ts';

const chromiumPath = chromiumOrSkip();

const words = ['BRAVO', 'CHARLIE', 'DELTA'];
/** The demo template's pre-pause notice, sent to the agent before each pause. */
const notice = 'Save your work: this task will pause.';

/**
 * The log as the page shows it, a line per item: `user: …` / `agent: …` for an entry, and
 * `— segment N —` for the boundary line before agent N's entries.
 */
function shownLog(page: Page): Promise<string[]> {
  return page
    .locator('ol.entries > li')
    .evaluateAll((items) =>
      items.map((li) =>
        li.getAttribute('data-testid') === 'segment-boundary'
          ? `— segment ${li.getAttribute('data-segment')} —`
          : `${li.querySelector('.who')?.textContent}: ${li.querySelector('pre')?.textContent}`,
      ),
    );
}

/** Each boundary line's text, and the times it names (paused at, resumed at) as written in their `datetime`. */
function shownBoundaries(page: Page): Promise<Array<{ text: string; times: string[] }>> {
  return page.getByTestId('segment-boundary').evaluateAll((items) =>
    items.map((li) => ({
      text: li.textContent ?? '',
      times: [...li.querySelectorAll('time')].map((t) => t.dateTime),
    })),
  );
}

/** Agent `segment`'s cycle as the log shows it: how it started, the message sent to it and its answer, the pause's notice and its answer. */
function cycle(segment: number, message: string): string[] {
  const start =
    segment === 1
      ? ['user: Say hello', 'agent: Done: "Say hello"']
      : [
          `— segment ${segment} —`,
          // A resumed demo agent first says what it was handed: the whole history before it (six
          // messages from the first agent, five from each later one), the pause's notice last.
          `agent: Resumed: I was given ${6 + 5 * (segment - 2)} earlier messages (the last you sent: "${notice}").`,
        ];
  return [...start, `user: ${message}`, `agent: Done: "${message}"`, `user: ${notice}`, `agent: Done: "${notice}"`];
}

// Issue 24's walk in the console: a demo task sent a message, paused and resumed again and again,
// every resume a new demo agent process; the task's page shows every cycle, in order,
// a boundary line between two agents, paused as well as live.
describe.skipIf(!chromiumPath)("the console shows a task's history across agents", () => {
  let server: TestServer;
  let dataDir: string;
  let browser: Browser;

  beforeAll(async () => {
    await ensureConsoleBuilt();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-console-history-'));
    server = await startTestServer(testBackends()[0]!, {
      HIATUS_PROVISIONER_DIR: path.join(dataDir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
    browser = await launchChromium(chromiumPath!);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('after three pause/resume cycles, paused, then resumed and paused from the page', async () => {
    const url = server.server.url;
    const api = apiClient(url, server.adminToken);
    const contents = async (id: string) => {
      const all: string[] = [];
      let cursor: number | undefined;
      do {
        const page = await api.tasks.logs.query({ id, cursor, limit: 100 });
        all.push(...page.entries.map((e) => e.content));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      return all;
    };
    const waitFor = (check: () => Promise<boolean>, what: string) =>
      vi.waitFor(
        async () => {
          if (!(await check())) throw new Error(`not yet: ${what}`);
        },
        { timeout: slow.timeout, interval: 100 },
      );

    const { task } = await api.tasks.create.mutate({ name: 'three-cycles', prompt: 'Say hello', template: 'demo' });
    const id = task.id;
    await waitFor(async () => (await api.tasks.get.query({ id })).status === 'active', 'the first agent answers');
    for (const [i, word] of words.entries()) {
      if (i > 0) {
        const resumed = await api.tasks.resume.mutate({ id, wait: true, waitMs: slow.timeout });
        expect(resumed).toMatchObject({ settled: true, task: { status: 'active' } });
      }
      await api.tasks.send.mutate({ id, input: `message ${word}` });
      await waitFor(async () => (await contents(id)).includes(`Done: "message ${word}"`), `the answer to ${word}`);
      const paused = await api.tasks.pause.mutate({ id, wait: true, waitMs: slow.timeout });
      expect(paused).toMatchObject({ settled: true, task: { status: 'paused' }, snapshot: { taken: true } });
    }

    // Paused: the page shows the three agents' cycles from the stored history, a boundary between each two.
    const context = await newContext(browser, { viewport: { width: 1200, height: 860 } });
    const { page, errors } = await watchedPage(context);
    await signIn(page, url, server.adminToken);
    await page.goto(`${url}/tasks/${id}`);
    await page.getByRole('heading', { name: 'three-cycles', level: 1 }).waitFor();
    const status = page.getByTestId('task-status');
    const source = page.getByTestId('log-source');
    await expect.poll(() => status.textContent(), slow).toBe('paused');
    await expect.poll(() => source.textContent(), slow).toMatch(/^From the snapshot taken at .+/);
    const threeCycles = words.flatMap((word, i) => cycle(i + 1, `message ${word}`));
    await expect.poll(() => shownLog(page), slow).toEqual(threeCycles);
    // All on one page of the log: nothing is left behind a "next page" button.
    expect(await page.getByRole('button', { name: 'Next page of the log' }).count()).toBe(0);

    // Each boundary says when the agent before it was paused and when the next one started, in that order.
    const checkBoundaries = async (count: number) => {
      const boundaries = await shownBoundaries(page);
      expect(boundaries).toHaveLength(count);
      const moments: number[] = [];
      for (const { text, times } of boundaries) {
        expect(text).toMatch(/^— paused at .+ — resumed at .+ with a new agent —$/);
        expect(times).toHaveLength(2);
        moments.push(...times.map((t) => Date.parse(t)));
      }
      expect(moments.every((m) => Number.isFinite(m))).toBe(true);
      expect(moments).toEqual([...moments].sort((a, b) => a - b));
    };
    await checkBoundaries(2);

    // Resumed from the page: the log is live, the new agent's segment last, after a third boundary;
    // a message sent from the page shows in it.
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => status.textContent(), slow).toBe('active');
    await expect.poll(() => source.textContent(), slow).toBe('Live from the agent');
    const resumedStart = cycle(4, 'message ECHO').slice(0, 2);
    await expect.poll(() => shownLog(page), slow).toEqual([...threeCycles, ...resumedStart]);
    await page.getByLabel(/^Message to the agent/).fill('message ECHO');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await expect
      .poll(() => shownLog(page), slow)
      .toEqual([...threeCycles, ...resumedStart, 'user: message ECHO', 'agent: Done: "message ECHO"']);
    await checkBoundaries(3);

    // Paused from the page: the page follows without a reload, the fourth agent's cycle now from its snapshot.
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await expect.poll(() => status.textContent(), slow).toBe('paused');
    await expect.poll(() => source.textContent(), slow).toMatch(/^From the snapshot taken at .+/);
    await expect.poll(() => shownLog(page), slow).toEqual([...threeCycles, ...cycle(4, 'message ECHO')]);
    await checkBoundaries(3);

    expect(errors).toEqual([]);
    await context.close();
  }, 300_000);
});
