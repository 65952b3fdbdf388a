import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const consoleDir = fileURLToPath(new URL('..', import.meta.url));
export const repoDir = path.resolve(consoleDir, '../..');

/** Debian's chromium (Playwright's own download cannot work here), or `CHROMIUM_PATH`; null when there is none. */
export function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

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
