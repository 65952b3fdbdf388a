import type { App } from '../app.ts';
import { purgeDeletedTasks as purgeRows } from '../db/tasks.ts';

/**
 * Removes tasks soft-deleted more than `olderThanMs` ago, for good: their workspaces, builds and
 * snapshots go with them (audit records stay). Returns the purged task ids.
 */
export function purgeDeletedTasks(app: Pick<App, 'db'>, olderThanMs: number): Promise<string[]> {
  return purgeRows(app.db, olderThanMs);
}
