import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../src/config.ts';
import { testBackends } from './databases.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const adminToken = 'demo-walk-admin-token-0123456789';

// The README's first example, run as a user would: a server (here, in this process), then
// `pnpm demo` in a process of its own.
describe('the README walk (examples/demo.ts)', () => {
  let running: TestServer;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-demo-'));
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_PROVISIONER_DIR: path.join(dataDir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
  }, 120_000);

  afterAll(async () => {
    await running?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs an agent, pauses it, reads its log while it sleeps, and resumes it', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], {
      cwd: repoRoot,
      env: { ...process.env, HIATUS_URL: running.server.url, HIATUS_TOKEN: adminToken },
      timeout: 90_000,
    });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^active: the agent answers at http:\/\/127\.0\.0\.1:\d+$/);
    expect(lines[1]).toMatch(
      /^live log: input: Say hello \| output: .* \| input: What are you working on\? \| output: /,
    );
    expect(lines[2]).toMatch(/^paused: snapshot of \d+ messages; agent stopped$/);
    expect(lines[3]).toMatch(/^log while paused \(snapshot\): \d+ entries$/);
    expect(lines[4]).toMatch(/^resumed: a new agent answers at http:\/\/127\.0\.0\.1:\d+$/);
    expect(lines[4]!.split(' at ')[1]).not.toBe(lines[0]!.split(' at ')[1]);
    expect(lines[5]).toMatch(/^live again: Done: "Welcome back"$/);
    expect(lines[6]).toBe('deleted: its workspace is gone');
  }, 120_000);

  it('says what to do when no key is given', async () => {
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], {
      cwd: repoRoot,
      env: { ...process.env, HIATUS_URL: running.server.url, HIATUS_TOKEN: '' },
    });
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('Set HIATUS_TOKEN') });
  });
});
