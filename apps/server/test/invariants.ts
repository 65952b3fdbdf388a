import { sql } from 'kysely';
import type { Db } from '../src/db/connection.ts';

/**
 * The lifecycle's invariants, checked straight in the database. Each entry is a violation in
 * words; an empty list means the state is consistent.
 */
export async function invariantViolations(db: Db, options: { workspaceIds?: string[] } = {}): Promise<string[]> {
  const only = options.workspaceIds?.length
    ? sql`AND workspace_id IN (${sql.join(options.workspaceIds.map((id) => sql`${id}::uuid`))})`
    : sql``;
  const checks: Array<[string, ReturnType<typeof sql<{ detail: string }>>]> = [
    [
      'build numbers have a gap',
      sql`SELECT workspace_id::text || ': ' || count(*) || ' builds, highest ' || max(build_number) AS detail
          FROM workspace_builds WHERE true ${only}
          GROUP BY workspace_id HAVING count(*) <> max(build_number)`,
    ],
    [
      'two builds in a row with the same transition (a task paused twice without a resume, say)',
      sql`SELECT workspace_id::text || ' #' || build_number || ' ' || transition AS detail FROM (
            SELECT workspace_id, build_number, transition, lag(transition) OVER (PARTITION BY workspace_id ORDER BY build_number) AS previous
            FROM workspace_builds WHERE true ${only}) b
          WHERE transition = previous`,
    ],
    [
      'a build follows a delete',
      sql`SELECT workspace_id::text || ' #' || build_number AS detail FROM (
            SELECT workspace_id, build_number, lag(transition) OVER (PARTITION BY workspace_id ORDER BY build_number) AS previous
            FROM workspace_builds WHERE true ${only}) b
          WHERE previous = 'delete'`,
    ],
    [
      'a pause that took a snapshot has none at least as new on a live task',
      sql`SELECT b.id::text AS detail
          FROM workspace_builds b
          JOIN tasks t ON t.workspace_id = b.workspace_id AND t.deleted_at IS NULL
          JOIN audit_logs a ON a.action = 'task.pause' AND a.diff->'build'->>'id' = b.id::text
          LEFT JOIN task_snapshots s ON s.task_id = t.id
          WHERE b.transition = 'stop' AND a.diff->'snapshot'->>'taken' = 'true'
            AND (s.task_id IS NULL OR s.log_snapshot_created_at < b.created_at) ${only}`,
    ],
    [
      'a build without exactly one audit record of the operation that made it',
      sql`SELECT b.id::text || ' has ' || count(a.id) AS detail
          FROM workspace_builds b
          LEFT JOIN audit_logs a ON a.action IN ('task.create', 'task.pause', 'task.resume', 'task.delete')
            AND a.diff->'build'->>'id' = b.id::text
          WHERE true ${only}
          GROUP BY b.id HAVING count(a.id) <> 1`,
    ],
    [
      'a snapshot belongs to a deleted task',
      sql`SELECT s.task_id::text AS detail FROM task_snapshots s JOIN tasks t ON t.id = s.task_id WHERE t.deleted_at IS NOT NULL`,
    ],
  ];
  const violations: string[] = [];
  for (const [what, query] of checks) {
    const { rows } = await query.execute(db);
    for (const row of rows) violations.push(`${what}: ${row.detail}`);
  }
  return violations;
}
