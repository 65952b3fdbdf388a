import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * When the server runs from its build (`pnpm start`: dist/main.mjs), the newest source file
 * changed after that build, if any: a `git pull` without `pnpm install` would otherwise run old
 * code without a word. Null when running from the sources, or when the build is current.
 */
export async function sourceNewerThanBuild(moduleUrl: string): Promise<string | null> {
  const built = fileURLToPath(moduleUrl);
  if (!built.endsWith(`${path.sep}dist${path.sep}main.mjs`)) return null;
  const serverDir = path.dirname(path.dirname(built));
  const builtAt = (await stat(built)).mtimeMs;
  const folders = [path.join(serverDir, 'src'), path.resolve(serverDir, '../../migrations')];
  for (const folder of folders) {
    const entries = await readdir(folder, { withFileTypes: true, recursive: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.name.endsWith('.test.ts')) continue;
      const file = path.join(entry.parentPath, entry.name);
      if ((await stat(file)).mtimeMs > builtAt) return path.relative(path.resolve(serverDir, '../..'), file);
    }
  }
  return null;
}
