import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../src/config.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from './databases.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

const adminToken = 'demo-walk-admin-token-0123456789';

// The README's first example, run as a user would: a server on its own, then `pnpm demo`.
describe('the README walk (examples/demo.ts)', () => {
  let server: ServerProcess;
  let database: TestDatabase | undefined;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-demo-'));
    const env: Record<string, string> = {
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_PROVISIONER_DIR: path.join(dataDir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    };
    if (postgresServerUrl()) {
      database = await createTestDatabase('postgres');
      if (database.config.kind === 'postgres') env.DATABASE_URL = database.config.url;
    } else {
      env.HIATUS_DATA_DIR = path.join(dataDir, 'data');
    }
    server = await startServerProcess(env);
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs an agent, pauses it, reads its log while it sleeps, and resumes it', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], {
      cwd: repoRoot,
      env: { ...process.env, HIATUS_URL: server.url, HIATUS_TOKEN: adminToken },
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
      env: { ...process.env, HIATUS_URL: server.url, HIATUS_TOKEN: '' },
    });
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('Set HIATUS_TOKEN') });
  });
});
