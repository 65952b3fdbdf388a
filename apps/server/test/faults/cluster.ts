import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

/**
 * Whether this run may stop and start the local PostgreSQL cluster: it needs root and
 * pg_ctlcluster. In CI (CI=true) it must be possible; elsewhere the fault tests skip with a message.
 */
export function clusterControl(): { version: string } | null {
  const possible = process.getuid?.() === 0 && existsSync('/usr/bin/pg_ctlcluster') && existsSync('/etc/postgresql');
  if (!possible) {
    if (process.env.CI === 'true')
      throw new Error('CI=true but the PostgreSQL cluster cannot be controlled (need root and pg_ctlcluster)');
    process.stdout.write('*** skipping PostgreSQL fault tests: they need root and pg_ctlcluster\n');
    return null;
  }
  const version = readdirSync('/etc/postgresql').sort().at(-1);
  return version ? { version } : null;
}

/** Stops or starts the cluster; starting one that already runs is fine. */
export function pgCluster(version: string, action: 'stop' | 'start'): void {
  if (action === 'start' && isRunning()) return;
  execFileSync(
    'pg_ctlcluster',
    ['--skip-systemctl-redirect', version, 'main', action, ...(action === 'stop' ? ['-m', 'fast'] : [])],
    {
      stdio: 'pipe',
    },
  );
}

function isRunning(): boolean {
  try {
    execFileSync('pg_isready', ['-h', '127.0.0.1', '-p', '5432', '-q']);
    return true;
  } catch {
    return false;
  }
}
