// The SDK's build from a clean state (no dist, no emitted declarations), as `pnpm --filter
// @hiatus/client build` runs it: wall time, CPU and the largest process's peak RSS (GNU time).
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';

const root = path.join(import.meta.dirname, '..');

export async function sdkBuild(): Promise<{ wallSeconds: number; cpuSeconds: number; peakRssMB: number }> {
  await rm(path.join(root, 'packages/client/dist'), { recursive: true, force: true });
  await rm(path.join(root, 'apps/server/node_modules/.cache/declarations'), { recursive: true, force: true });
  const report = await new Promise<string>((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'TIME %e %U %S %M', 'pnpm', '--filter', '@hiatus/client', 'build'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(stderr) : reject(new Error(`the SDK build exited with ${code}: ${stderr.slice(-500)}`)),
    );
  });
  const [wall, user, system, maxKiB] = (/TIME (\S+) (\S+) (\S+) (\d+)/.exec(report) ?? []).slice(1).map(Number);
  if (wall === undefined) throw new Error(`no figures from /usr/bin/time: ${report.slice(-300)}`);
  return {
    wallSeconds: wall,
    cpuSeconds: Math.round((user! + system!) * 10) / 10,
    peakRssMB: Math.round((maxKiB! * 1024) / 1e6),
  };
}
