import { sql } from 'kysely';
import type { Lifecycle } from './context.ts';

/**
 * Removes tasks soft-deleted more than `olderThanMs` ago, with their workspaces. Their snapshots
 * and builds go by the foreign keys' cascades. Returns the purged task ids.
 */
export async function purgeDeletedTasks(lc: Lifecycle, olderThanMs: number): Promise<string[]> {
  return lc.db.transaction().execute(async (trx) => {
    const purged = await trx
      .deleteFrom('tasks')
      .where('deleted_at', '<', sql<Date>`NOW() - make_interval(secs => ${olderThanMs / 1000})`)
      .returning(['id', 'workspace_id'])
      .execute();
    if (purged.length > 0) {
      await trx
        .deleteFrom('workspaces')
        .where(
          'id',
          'in',
          purged.map((t) => t.workspace_id),
        )
        .execute();
    }
    return purged.map((t) => t.id);
  });
}
