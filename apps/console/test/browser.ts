import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const consoleDir = fileURLToPath(new URL('..', import.meta.url));
export const repoDir = path.resolve(consoleDir, '../..');

/** Debian's chromium (Playwright's own download cannot work here), or `CHROMIUM_PATH`; null when there is none. */
function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

/**
 * The chromium a browser test file runs in: null (with a warning) when there is none, and the file
 * skips its browser tests; under CI=true none is an error, since there the browser tests must run.
 */
export function chromiumOrSkip(): string | null {
  const found = findChromium();
  if (!found) {
    const message =
      'no chromium found (apt-get install -y chromium, or set CHROMIUM_PATH): the browser tests are skipped';
    if (process.env.CI === 'true')
      throw new Error(`${message.split(':')[0]}: under CI=true the browser tests must run`);
    console.warn(message);
  }
  return found;
}

/** For what the page shows after a round trip or a stream: generous, it costs nothing when it holds at once. */
export const slow = { timeout: 60_000 };

function newestChange(entry: string): number {
  const info = statSync(entry);
  if (!info.isDirectory()) return info.mtimeMs;
  return Math.max(info.mtimeMs, ...readdirSync(entry).map((name) => newestChange(path.join(entry, name))));
}

/** Builds the console (as `pnpm install` does) when its dist is missing or older than its sources (the SDK's included). */
export async function ensureConsoleBuilt(): Promise<void> {
  const built = path.join(consoleDir, 'dist', 'index.html');
  const sources = ['src', 'index.html', 'vite.config.ts', '../../packages/client/src'].map((p) =>
    path.join(consoleDir, p),
  );
  if (existsSync(built) && statSync(built).mtimeMs >= Math.max(...sources.map(newestChange))) return;
  await promisify(execFile)('pnpm', ['--filter', '@hiatus/console', 'build'], { cwd: repoDir });
}

/** Headless chromium; root needs --no-sandbox. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** A browser context whose waits (Playwright's `waitFor`, clicks) are as generous as `slow`. */
export async function newContext(
  browser: Browser,
  options: Parameters<Browser['newContext']>[0] = {},
): Promise<BrowserContext> {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(slow.timeout);
  return context;
}

/** A page whose console errors and uncaught exceptions are collected for the test to assert none. */
export async function watchedPage(context: BrowserContext): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${page.url()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`${page.url()}: uncaught ${error.message}`));
  return { page, errors };
}

/** Signs in with `key` on the server at `url`, and waits for the tasks page. */
export async function signIn(page: Page, url: string, key: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Tasks', level: 1 }).waitFor();
}
