import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
// The declaration of what this setup provides lives beside its readers.
import type {} from './databases.ts';
import { defaultTestDatabaseUrl } from './global-setup.ts';
import { addressInUse, onFreePort } from './private-postgres.ts';

/** Debian's PgBouncer, or one on PATH; null when it is not installed. */
export function findPgbouncer(): string | null {
  if (existsSync('/usr/sbin/pgbouncer')) return '/usr/sbin/pgbouncer';
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/**
 * The `pgbouncer` project's setup: PgBouncer in transaction pooling mode in front of the test
 * PostgreSQL, started here and stopped after the run. The API and race suites then run with their
 * databases reached through it (DATABASE_URL) and a direct URL for what needs a session (LISTEN,
 * creating and dropping databases). Without PgBouncer the project has no files to run (see
 * vitest.config.ts); under CI=true that is a failure.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const binary = findPgbouncer();
  if (!binary) {
    if (process.env.CI === 'true') throw new Error('pgbouncer is not installed (CI=true: .ci/run installs it)');
    process.stdout.write('\n*** pgbouncer is not installed: the API and race suites did not run through it.\n\n');
    return undefined;
  }
  const direct = new URL(process.env.TEST_DATABASE_URL || defaultTestDatabaseUrl);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-pgbouncer-'));
  const user = decodeURIComponent(direct.username || 'postgres');
  await writeFile(path.join(dir, 'users.txt'), `"${user}" ""\n`);
  // PgBouncer refuses to run as root: it drops to the postgres user, who must read its files.
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? lookupUser('postgres') : null;
  // PgBouncer cannot listen on port 0: a port picked just before may be taken by the time it binds,
  // and it then exits saying so; it is started again on another port.
  const { child, port } = await onFreePort(
    async (port) => {
      await writeFile(path.join(dir, 'pgbouncer.ini'), pgbouncerIni(dir, direct, port));
      for (const file of owner ? ['', 'users.txt', 'pgbouncer.ini'] : []) {
        chownSync(path.join(dir, file), owner!.uid, owner!.gid);
      }
      const child = spawn(binary, [...(asRoot ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      await listening(child, port).catch((error: unknown) => {
        child.kill('SIGKILL');
        throw error;
      });
      return { child, port };
    },
    (error) => addressInUse.test((error as Error).message),
  );
  const url = new URL(direct);
  url.host = `127.0.0.1:${port}`;
  // Listening, and passing connections on to PostgreSQL.
  const client = new pg.Client({ connectionString: url.toString() });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
  project.provide('pgbouncerUrl', url.toString());
  return async () => {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
    await rm(dir, { recursive: true, force: true });
  };
}

function pgbouncerIni(dir: string, direct: URL, port: number): string {
  return [
    '[databases]',
    `* = host=${direct.hostname} port=${direct.port || 5432}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'users.txt')}`,
    'pool_mode = transaction',
    'max_client_conn = 2000',
    'default_pool_size = 80',
    'ignore_startup_parameters = extra_float_digits,options',
    `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    '',
  ].join('\n');
}

/** Resolves once PgBouncer logs that it listens on `port`; rejects with its log if it exits first. */
function listening(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = '';
    let up = false;
    // Read to the end (an unread pipe would block PgBouncer), kept only until it listens.
    child.stderr!.on('data', (chunk: Buffer) => {
      if (up) return;
      log += chunk.toString();
      up = log.includes(`listening on 127.0.0.1:${port}`);
      if (up) resolve();
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`pgbouncer exited with ${code}: ${log}`)));
    // Only a hang ends here: a start takes milliseconds.
    setTimeout(() => reject(new Error(`pgbouncer did not listen within 60 s: ${log}`)), 60_000).unref();
  });
}

/** A system user's uid and gid (`id`). */
function lookupUser(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}
