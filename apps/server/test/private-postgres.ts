// What the tests and benches that run PostgreSQL clusters of their own (a replica pair, a
// measuring cluster) or other local servers (PgBouncer) share: a free port and a cluster folder.
import { execFile } from 'node:child_process';
import { chown, mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A free TCP port on loopback, for a process started next. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

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
