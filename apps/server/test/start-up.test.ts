import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { authenticate } from '../src/auth/principals.ts';
import { repoRoot } from '../src/config.ts';
import { type DatabaseConfig, openDatabase } from '../src/db/connection.ts';
import { migrationFolder, pendingMigrations } from '../src/db/migrate.ts';
import { apiClient, codeOf } from './api-client.ts';
import { postgresServerUrl } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { testProvisionerDir } from './paths.ts';
import { startServerProcess } from './server-process.ts';

const rootPackage = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};

// The first hour, as a new user lives it: start lines, the admin key box, `pnpm admin:key`,
// Ctrl-C, and a PostgreSQL database that nobody created beforehand.

type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** Runs a command from the repository root to its end, with `env` on top of this process's. */
function run(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const adminKey = (env: Record<string, string>, ...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'apps/server/src/cli/admin-key.ts', ...args], env);

/** The key in an admin key box. */
function keyIn(text: string): string {
  const key = /║\s+(hiatus_\S+)\s+║/.exec(text)?.[1];
  if (!key) throw new Error(`no key box in: ${text}`);
  return key;
}

async function usable(config: DatabaseConfig, key: string): Promise<boolean> {
  const database = openDatabase(config);
  try {
    return (await authenticate(database.db, key)).ok;
  } finally {
    await database.close();
  }
}

const migrationCount = async () => (await readdir(migrationFolder)).filter((f) => /^\d{4}_.+\.ts$/.test(f)).length;

const serverUrl = postgresServerUrl();
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'hiatus-start-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A PostgreSQL URL naming a database that does not exist yet; dropped after the tests. */
function missingDatabase(): { name: string; url: string } {
  const name = `hiatus_missing_${Math.random().toString(36).slice(2, 10)}`;
  const url = new URL(serverUrl!);
  url.pathname = `/${name}`;
  cleanups.push(() => withServer((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  return { name, url: url.toString() };
}

async function withServer<T>(use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl! });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

const databaseExists = (name: string) =>
  withServer(async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1);

describe('pnpm admin:key', () => {
  it.skipIf(!serverUrl)(
    'mints a working admin key in a PostgreSQL database it creates, and --revoke-others revokes the old one',
    async () => {
      const { name, url } = missingDatabase();
      const config: DatabaseConfig = { kind: 'postgres', url, poolSize: 2 };
      const first = await adminKey({ DATABASE_URL: url });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toContain(`created the database "${name}"`);
      const oldKey = keyIn(first.stdout);
      expect(await usable(config, oldKey)).toBe(true);

      const kept = await adminKey({ DATABASE_URL: url });
      expect(await usable(config, keyIn(kept.stdout))).toBe(true);
      expect(await usable(config, oldKey)).toBe(true);

      const second = await adminKey({ DATABASE_URL: url }, '--revoke-others');
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toContain('revoked 2 other key');
      expect(await usable(config, keyIn(second.stdout))).toBe(true);
      expect(await usable(config, oldKey)).toBe(false);
    },
  );

  it('refuses an unknown option', async () => {
    const result = await adminKey({ HIATUS_DATA_DIR: await tempDir() }, '--nope');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('usage: pnpm admin:key');
  });
});

describe('the server process', () => {
  // What `pnpm start` runs (after its `exec`): the built server, built here from the current sources.
  const [startCommand, ...startArgs] = (rootPackage.scripts.start as string).replace(/^exec /, '').split(' ');
  beforeAll(async () => {
    const built = await run('pnpm', ['--silent', '--filter', '@hiatus/server', 'build'], {});
    expect(built.code, built.stderr).toBe(0);
  }, 120_000);

  it.skipIf(!serverUrl)(
    'tells each start phase, prints the first admin key in a box, and exits 0 quietly on SIGINT',
    async () => {
      const { name, url } = missingDatabase();
      expect(startCommand).toBe('node');
      const child = spawn(process.execPath, startArgs, {
        cwd: repoRoot,
        env: {
          ...process.env,
          PORT: '0',
          LOG_LEVEL: 'info',
          DATABASE_URL: url,
          HIATUS_ADMIN_TOKEN: '',
          HIATUS_PROVISIONER_DIR: testProvisionerDir,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      // 'close': the process has exited and its output has all been read.
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.once('close', (code, signal) => resolve([code, signal])),
      );
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk) => {
          stdout += chunk;
          if (stdout.includes('"msg":"listening"')) resolve();
        });
        void exited.then(([code]) => reject(new Error(`exited with ${code}: ${stderr}`)));
      });
      child.kill('SIGINT');
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: 0, signal: null });

      // Every stdout line is JSON (no TTY), and each phase has its line.
      const messages = stdout
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      expect(messages).toContain(`opening the database: postgres at ${new URL(url).host}/${name}`);
      const total = await migrationCount();
      const steps = messages.filter((m) => m.startsWith('migrating '));
      expect(steps).toHaveLength(total);
      expect(steps[0]).toBe(`migrating 1 of ${total}: 0001_core_schema`);
      expect(steps.at(-1)).toMatch(new RegExp(`^migrating ${total} of ${total}: `));
      expect(messages).toContain('listening');
      expect(messages.at(-1)).toBe('stopped');

      // Stderr holds the key box, and nothing else: no noise on a clean stop.
      const key = keyIn(stderr);
      expect(stderr.replace(/^.*║.*$|^[╔╚].*$/gm, '').trim()).toBe('');
      expect(await usable({ kind: 'postgres', url, poolSize: 1 }, key)).toBe(true);
    },
  );

  it.skipIf(!serverUrl)('creates the PostgreSQL database it is given when it does not exist', async () => {
    const { name, url } = missingDatabase();
    expect(await databaseExists(name)).toBe(false);
    const server = await startServerProcess({ DATABASE_URL: url });
    try {
      expect(server.lines.map((l) => l.msg)).toContain(`created the database "${name}": it did not exist`);
      expect(server.lines.map((l) => l.msg)).toContain(`migrating 1 of ${await migrationCount()}: 0001_core_schema`);
    } finally {
      await server.stop();
    }
    expect(server.child.exitCode).toBe(0);
    expect(await databaseExists(name)).toBe(true);
  });

  it('starts on a new PGlite folder as a copy of the seed the build made: no initdb, no migration', async () => {
    const dataDir = path.join(await tempDir(), 'data');
    const server = await startServerProcess(
      { DATABASE_URL: '', HIATUS_DATA_DIR: dataDir, HIATUS_ADMIN_TOKEN: 'seeded-folder-admin-token-0123456789' },
      [],
      { compiled: true },
    );
    try {
      const messages = server.lines.map((l) => l.msg);
      expect(messages).toContain('a new database: started as a copy of the seed, without initdb');
      expect(messages).toContain('schema is current');
      expect(messages.filter((m) => String(m).startsWith('migrating '))).toEqual([]);
    } finally {
      await server.stop();
    }
    expect(server.child.exitCode).toBe(0);
    // The admin key is made at start, in the copy: the seed holds none.
    expect(await usable({ kind: 'pglite', dataDir }, 'seeded-folder-admin-token-0123456789')).toBe(true);
  });

  it.skipIf(!serverUrl)(
    'stops cleanly on Ctrl-C under `pnpm start`: the signal reaches pnpm and the server, and all exit 0 quietly',
    async () => {
      const { url } = missingDatabase();
      // Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
      const child = spawn('pnpm', ['start'], {
        cwd: repoRoot,
        detached: true,
        env: {
          ...process.env,
          PORT: '0',
          LOG_LEVEL: 'info',
          DATABASE_URL: url,
          HIATUS_PROVISIONER_DIR: testProvisionerDir,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk) => {
          stdout += chunk;
          if (stdout.includes('"msg":"listening"')) resolve();
        });
        void exited.then((code) => reject(new Error(`exited with ${code}: ${stderr}`)));
      });
      process.kill(-child.pid!, 'SIGINT');
      expect(await exited).toBe(0);
      expect(stdout).toContain('"msg":"stopped"');
      expect(stderr).not.toMatch(/ELIFECYCLE|Command failed/);
    },
  );
});

describe('a second Ctrl-C', () => {
  it.skipIf(!serverUrl)(
    'is let go while the shutdown is under way: the call in flight gets its answer, and the server exits 0',
    async () => {
      const { url } = missingDatabase();
      const token = 'second-signal-admin-token-0123456789';
      const agent = await new FakeAgent().start();
      cleanups.push(() => agent.stop());
      // A call that holds the shutdown open: a pause whose agent never answers, for the agent timeout.
      const server = await startServerProcess({
        DATABASE_URL: url,
        HIATUS_ADMIN_TOKEN: token,
        HIATUS_AGENT_TIMEOUT_MS: '3000',
      });
      cleanups.push(() => server.kill());
      const exited = new Promise<number | null>((resolve) => {
        if (server.child.exitCode !== null) resolve(server.child.exitCode);
        else server.child.once('exit', (code) => resolve(code));
      });
      const api = apiClient(server.url, token);
      const { task } = await api.tasks.create.mutate({ name: 'held', prompt: '', agentUrl: agent.url });
      await until(async () => (await api.tasks.get.query({ id: task.id })).status === 'active');
      agent.mode = 'hang';
      const reads = agent.historyReads;
      const inFlight = codeOf(api.tasks.pause.mutate({ id: task.id }));
      await until(async () => agent.historyReads > reads); // the pause is at the agent

      server.child.kill('SIGINT');
      await until(async () => server.lines.some((line) => line.msg === 'shutting down'));
      server.child.kill('SIGINT'); // as pnpm sends it again, while the first is still being served
      expect(await inFlight).toBe('PRECONDITION_FAILED');
      expect(await exited).toBe(0);
      expect(server.lines.at(-1)).toMatchObject({ msg: 'stopped' });
    },
  );
});

/** Until `check` holds: generous, since a wait on a condition costs nothing once it holds. */
async function until(check: () => Promise<boolean>): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await check())) throw new Error('not yet');
    },
    { timeout: 60_000, interval: 20 },
  );
}

describe('pnpm db:migrate', () => {
  it.skipIf(!serverUrl)('creates the database DATABASE_URL names when it is missing, then migrates it', async () => {
    const { name, url } = missingDatabase();
    const result = await run('pnpm', ['--silent', 'db:migrate'], { DATABASE_URL: url });
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stderr).toContain(`created the database "${name}"`);
    expect(await databaseExists(name)).toBe(true);
    const database = openDatabase({ kind: 'postgres', url, poolSize: 1 });
    try {
      expect(await pendingMigrations(database.db)).toEqual([]);
    } finally {
      await database.close();
    }
  });
});
