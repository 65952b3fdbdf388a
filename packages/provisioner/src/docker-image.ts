import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dockerClient, dockerStatus, engineMessage } from './docker-engine.ts';
import { type TarEntry, tarStream } from './docker-tar.ts';

/**
 * The demo agent as a Docker image, built on this host from what it already has, since no image
 * can be pulled (no registry needs to be reachable): this very node binary, the libraries `ldd`
 * lists for it (the dynamic loader included), and `demo-agent/agent.mjs` (Node builtins only),
 * imported as a root filesystem (`docker import`). No shell, no package manager: the agent runs as
 * uid 1000 with `/workspace` its own. Tagged by the content's hash, so it is built once a machine.
 */
export const demoImage = Object.freeze({
  repository: 'hiatus-demo-agent',
  /** Also given to the newest build, for a template to name. */
  stableTag: 'demo',
  node: '/usr/local/bin/node',
  agent: '/opt/hiatus/agent.mjs',
  workspace: '/workspace',
  user: '1000:1000',
  port: 3284,
});

/** The demo agent beside these sources (a bundle that moves them passes its own path). */
const sourceAgentFile = fileURLToPath(new URL('../demo-agent/agent.mjs', import.meta.url));

/** The image's files, in archive order (directories before what they hold). */
async function rootFilesystem(agentFile: string): Promise<TarEntry[]> {
  const node = await realpath(process.execPath);
  const libraries = await sharedLibraries(node);
  const dirs = new Set<string>(['tmp', 'etc', 'opt', 'opt/hiatus', 'usr', 'usr/local', 'usr/local/bin']);
  for (const library of libraries) {
    const parts = library.slice(1).split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const file = async (path: string, from: string): Promise<TarEntry> => {
    const info = await stat(from); // through symlinks: the image holds the library itself under ldd's name
    return { type: 'file', path: path.slice(1), mode: info.mode & 0o755, from, size: info.size };
  };
  const text = (path: string, content: string): TarEntry => ({
    type: 'file',
    path,
    mode: 0o644,
    content: Buffer.from(content),
  });
  return [
    ...[...dirs].sort().map((path): TarEntry => ({ type: 'dir', path, mode: path === 'tmp' ? 0o1777 : 0o755 })),
    { type: 'dir', path: demoImage.workspace.slice(1), mode: 0o700, uid: 1000, gid: 1000 },
    text('etc/passwd', 'root:x:0:0:root:/root:/nonexistent\nagent:x:1000:1000:agent:/workspace:/nonexistent\n'),
    text('etc/group', 'root:x:0:\nagent:x:1000:\n'),
    await file(demoImage.node, node),
    ...(await Promise.all(libraries.map((library) => file(library, library)))),
    { type: 'file', path: demoImage.agent.slice(1), mode: 0o644, content: await readFile(agentFile) },
  ];
}

/** The absolute paths `ldd` lists for a binary (`libc.so.6 => /lib/…/libc.so.6 (0x…)`, and the loader). */
async function sharedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('ldd', [binary]));
  } catch (error) {
    if (/not a dynamic executable/.test(String((error as { stderr?: string }).stderr))) return []; // a static node
    throw new Error(`ldd ${binary} failed: ${(error as Error).message}`);
  }
  const paths = stdout
    .split('\n')
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
    .filter((path): path is string => path !== undefined);
  return [...new Set(paths)].sort();
}

/** Files bigger than this (the node binary) are known by their size and time, not read for the hash. */
const hashedBytesLimit = 8 * 2 ** 20;

/**
 * A hash of the entries: their paths, modes, owners and bytes; a file over `hashedBytesLimit` by its
 * source, size and modification time instead (every server start checks the image, and reading
 * 100 MB each time would cost more than the rest of the start).
 */
async function contentHash(entries: TarEntry[]): Promise<string> {
  const hash = createHash('sha256');
  for (const entry of entries) {
    hash.update(`${entry.type} ${entry.path} ${entry.mode} ${entry.uid ?? 0}:${entry.gid ?? 0}\n`);
    if (entry.type !== 'file') continue;
    if ('content' in entry) hash.update(entry.content);
    else if (entry.size > hashedBytesLimit) {
      hash.update(`${entry.from} ${entry.size} ${(await stat(entry.from)).mtimeMs}\n`);
    } else for await (const chunk of createReadStream(entry.from)) hash.update(chunk as Buffer);
  }
  return hash.digest('hex').slice(0, 16);
}

let ensured: Promise<{ image: string; built: boolean }> | undefined;

/**
 * The demo image's name (`hiatus-demo-agent:<content hash>`), imported into the Engine first when
 * it does not hold it yet (`built` then says so), and tagged `hiatus-demo-agent:demo` too. Once per
 * process; a failure is tried again at the next call.
 */
export function ensureDemoImage(agentFile = sourceAgentFile): Promise<{ image: string; built: boolean }> {
  ensured ??= buildDemoImage(agentFile).catch((error: unknown) => {
    ensured = undefined;
    throw error;
  });
  return ensured;
}

async function buildDemoImage(agentFile: string): Promise<{ image: string; built: boolean }> {
  const docker = dockerClient();
  const entries = await rootFilesystem(agentFile);
  const tag = await contentHash(entries);
  const image = `${demoImage.repository}:${tag}`;
  let built = false;
  try {
    await docker.getImage(image).inspect();
  } catch (error) {
    if (dockerStatus(error) !== 404) throw new Error(`could not look for the image ${image}: ${engineMessage(error)}`);
    await importImage(entries, tag);
    built = true;
  }
  // A name that stays (the demo-docker template's), for the newest build on this machine.
  await docker.getImage(image).tag({ repo: demoImage.repository, tag: demoImage.stableTag });
  return { image, built };
}

async function importImage(entries: TarEntry[], tag: string): Promise<void> {
  const docker = dockerClient();
  const image = `${demoImage.repository}:${tag}`;
  const progress = await docker.importImage(tarStream(entries), { repo: demoImage.repository, tag });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(progress, (error: Error | null) =>
      error ? reject(new Error(`could not import the image ${image}: ${error.message}`)) : resolve(),
    ),
  );
}
