import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CliError } from './exit-codes.ts';

/** Where a server answers when nothing says otherwise: `pnpm start`'s address. */
export const defaultServerUrl = 'http://127.0.0.1:8080';

/** A server and the API key to present to it. */
export type Credentials = { url: string; token: string };

/**
 * The file `hiatus login` writes: `$XDG_CONFIG_HOME/hiatus/config.json`, else
 * `~/.config/hiatus/config.json` (a relative XDG_CONFIG_HOME is ignored, as the XDG spec says).
 */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.config');
  return path.join(base, 'hiatus', 'config.json');
}

/** The saved credentials, or null when there are none; a file that is not ours is an error, not "none". */
export async function readSavedCredentials(file: string): Promise<Credentials | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const saved = JSON.parse(text) as Partial<Credentials>;
    if (typeof saved.url === 'string' && typeof saved.token === 'string') return { url: saved.url, token: saved.token };
  } catch {}
  throw new CliError('unexpected', `${file} is not a hiatus login file: run \`hiatus login\` again`);
}

/**
 * Saves the credentials readable by the user alone: the folder 0700, the file 0600, written to a
 * temporary file first and renamed, so a reader never sees half a file and the key is never in a
 * file anyone else may read, even for a moment.
 */
export async function saveCredentials(file: string, credentials: Credentials): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(temporary, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: 'w' });
    await chmod(temporary, 0o600);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Forgets the saved credentials; whether there were any. */
export async function removeCredentials(file: string): Promise<boolean> {
  try {
    await rm(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * The credentials a command uses: `HIATUS_URL` and `HIATUS_TOKEN` over the saved ones (each on its
 * own: a saved login with another server's URL in the environment is fine); the URL defaults to
 * the local server.
 */
export async function resolveCredentials(env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const saved = await readSavedCredentials(configPath(env));
  const token = env.HIATUS_TOKEN || saved?.token;
  if (!token) throw new CliError('unauthorized', 'not logged in: run `hiatus login`, or set HIATUS_TOKEN');
  return { url: env.HIATUS_URL || saved?.url || defaultServerUrl, token };
}
