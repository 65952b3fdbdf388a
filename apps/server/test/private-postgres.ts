// What the tests and benches that run PostgreSQL clusters of their own (a replica pair, a
// measuring cluster) or other local servers (PgBouncer) share: a free port and a cluster folder.
import { execFile } from 'node:child_process';
import { chown, mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A TCP port on loopback that was free a moment ago, for a program that cannot listen on port 0
 * and say which port it got (PostgreSQL, PgBouncer). Anything may take it before that program
 * binds it: start it with `onFreePort`, which tries again on another port when that happened.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Runs `start` on a port from `freePort`, and again on a new one (up to `attempts` in all) when
 * `inUse(error, port)` says it failed because the port was taken between the pick and the bind.
 */
export async function onFreePort<T>(
  start: (port: number) => Promise<T>,
  inUse: (error: unknown, port: number) => boolean | Promise<boolean>,
  attempts = 5,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (error) {
      if (attempt >= attempts || !(await inUse(error, port))) throw error;
    }
  }
}

/** What a program says when the address it was told to listen on is taken (PostgreSQL, PgBouncer, Node.js). */
export const addressInUse = /address already in use|EADDRINUSE/i;

/**
 * A temporary folder for private clusters, and `as` to run PostgreSQL's program `command` (from `bin`)
 * in it. initdb refuses root: as root the folder and the clusters belong to the postgres user.
 */
export async function clusterFolder(prefix: string, bin: string) {
  const root = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  if (root) {
    const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
    await chown(dir, await id('-u'), await id('-g'));
  }
  const as = (command: string, args: string[]) =>
    root
      ? run('runuser', ['-u', 'postgres', '--', path.join(bin, command), ...args])
      : run(path.join(bin, command), args);
  return { dir, as };
}
