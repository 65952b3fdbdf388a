import { type Expression, sql } from 'kysely';
import { type JobStatus, stateByBuild, type TaskStatus, type WorkspaceTransition } from '../domain/lifecycle.ts';

/** The domain's status derivation as SQL, built from the same table, for filtering and counting in the database. */
export function taskStatusSql(
  deletedAt: Expression<Date | null>,
  transition: Expression<WorkspaceTransition | null>,
  jobStatus: Expression<JobStatus | null>,
): Expression<TaskStatus> {
  const arms = Object.entries(stateByBuild).flatMap(([t, byJob]) =>
    Object.entries(byJob).map(
      ([j, state]) => sql`WHEN ${transition} = ${t} AND ${jobStatus} = ${j} THEN ${state.status}`,
    ),
  );
  return sql<TaskStatus>`(CASE WHEN ${deletedAt} IS NOT NULL THEN 'deleted' ${sql.join(arms, sql` `)} ELSE 'pending' END)`;
}
