import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useDatabase } from '../../test/harness.ts';
import { deriveStatus, jobStatuses, workspaceTransitions } from '../domain/lifecycle.ts';
import { taskStatusSql } from './status-sql.ts';

describe('the SQL status expression', () => {
  const database = useDatabase('pglite');

  it('agrees with deriveStatus for every transition and job status', async () => {
    for (const transition of workspaceTransitions) {
      for (const jobStatus of jobStatuses) {
        for (const deletedAt of [null, new Date()]) {
          const expr = taskStatusSql(
            sql`${deletedAt}::timestamptz`,
            sql`${transition}::workspace_transition`,
            sql`${jobStatus}::provisioner_job_status`,
          );
          const { rows } = await sql<{ status: string }>`SELECT ${expr} AS status`.execute(database.db);
          expect(rows[0]?.status, `${transition}/${jobStatus}/${deletedAt}`).toBe(
            deriveStatus(deletedAt, { transition, jobStatus }),
          );
        }
      }
    }
  });
});
