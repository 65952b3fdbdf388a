import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, type TestDatabase } from '../../test/databases.ts';
import type { Db } from '../db/connection.ts';
import type { ProvisionerJobStatus, WorkspaceTransition } from '../db/schema.ts';
import { assertAllowed, deriveStatus, statusSql, type TaskStatus } from './status.ts';

const transitions: WorkspaceTransition[] = ['start', 'stop', 'delete'];
const jobStatuses: ProvisionerJobStatus[] = ['pending', 'running', 'succeeded', 'failed', 'canceled'];

describe('task status', () => {
  it.each([
    ['start', 'pending', 'pending'],
    ['start', 'running', 'initializing'],
    ['start', 'succeeded', 'active'],
    ['stop', 'pending', 'pausing'],
    ['stop', 'running', 'pausing'],
    ['stop', 'succeeded', 'paused'],
    ['start', 'failed', 'error'],
    ['stop', 'failed', 'error'],
    ['delete', 'pending', 'deleted'],
  ] as const)('is derived from a %s build that is %s as %s', (transition, jobStatus, status) => {
    expect(deriveStatus(null, { transition, jobStatus })).toBe(status);
  });

  it('is deleted once the task is soft-deleted, whatever its builds', () => {
    expect(deriveStatus(new Date(), { transition: 'start', jobStatus: 'succeeded' })).toBe('deleted');
  });

  it.each([
    ['pause', 'active', true],
    ['pause', 'paused', false],
    ['pause', 'pausing', false],
    ['pause', 'initializing', false],
    ['resume', 'paused', true],
    ['resume', 'active', false],
    ['resume', 'pausing', false],
    ['delete', 'active', true],
    ['delete', 'deleted', false],
  ] as const)('%s from %s: allowed %s', (operation, status, allowed) => {
    const check = () => assertAllowed(operation, { id: 't', status: status as TaskStatus, latestBuild: null });
    if (allowed) expect(check).not.toThrow();
    else expect(check).toThrow(new RegExp(`cannot ${operation} task t: it is ${status}`));
  });

  it('allows resume from error only after a failed stop', () => {
    expect(() =>
      assertAllowed('resume', { id: 't', status: 'error', latestBuild: { transition: 'stop' } }),
    ).not.toThrow();
    expect(() => assertAllowed('resume', { id: 't', status: 'error', latestBuild: { transition: 'start' } })).toThrow(
      /after a failed start/,
    );
  });
});

describe('the SQL status expression', () => {
  let database: TestDatabase & { db: Db };
  beforeAll(async () => {
    database = await createMigratedDatabase('pglite');
  });
  afterAll(() => database.drop());

  it('agrees with deriveStatus for every transition and job status', async () => {
    for (const transition of transitions) {
      for (const jobStatus of jobStatuses) {
        for (const deletedAt of [null, new Date()]) {
          const expr = statusSql(
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
