import type { PauseReason } from '../domain/lifecycle.ts';
import type { Db } from './connection.ts';
import type { PauseFailureCause } from './schema.ts';

export type { PauseFailureCause };

/** Counts one failed pause for telemetry (the failure changed nothing, so it has no audit record). */
export async function insertPauseFailure(
  db: Db,
  failure: { taskId: string; reason: PauseReason; cause: PauseFailureCause; detail: string },
): Promise<void> {
  await db
    .insertInto('task_pause_failures')
    .values({
      task_id: failure.taskId,
      reason: failure.reason,
      cause: failure.cause,
      detail: failure.detail.slice(0, 2000),
    })
    .execute();
}
