import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, testBackends } from '../../test/databases.ts';
import { insertTaskRows } from '../../test/fixtures.ts';
import { apiKeyScopes, userRoles } from '../domain/actor.ts';
import { buildReasons, jobStatuses, workspaceTransitions } from '../domain/lifecycle.ts';
import type { Db } from './connection.ts';

describe.each(testBackends())('schema on %s', (backend) => {
  let db: Db;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    ({ db, drop } = await createMigratedDatabase(backend));
  });
  afterAll(() => drop());

  it('creates task_snapshots exactly as designed', async () => {
    const columns = await sql<{
      column_name: string;
      data_type: string;
      is_nullable: string;
      column_default: string | null;
    }>`
      SELECT column_name, data_type, is_nullable, column_default
      FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name = 'task_snapshots'
      ORDER BY ordinal_position`.execute(db);
    expect(columns.rows).toEqual([
      { column_name: 'task_id', data_type: 'uuid', is_nullable: 'NO', column_default: null },
      { column_name: 'log_snapshot', data_type: 'jsonb', is_nullable: 'NO', column_default: null },
      {
        column_name: 'log_snapshot_created_at',
        data_type: 'timestamp with time zone',
        is_nullable: 'NO',
        column_default: 'now()',
      },
    ]);

    const table = await sql<{ relpersistence: string; comment: string | null }>`
      SELECT relpersistence, obj_description(oid, 'pg_class') AS comment
      FROM pg_class WHERE oid = 'public.task_snapshots'::regclass`.execute(db);
    expect(table.rows[0]?.relpersistence).toBe('p'); // a regular table, not UNLOGGED
    expect(table.rows[0]?.comment).toMatch(/snapshot/i);

    const comments = await sql<{ attname: string; comment: string | null }>`
      SELECT attname, col_description(attrelid, attnum) AS comment
      FROM pg_attribute
      WHERE attrelid = 'public.task_snapshots'::regclass AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum`.execute(db);
    expect(comments.rows).toHaveLength(3);
    for (const row of comments.rows) expect(row.comment, row.attname).toMatch(/\w{4,}/);

    const constraints = await sql<{ contype: string; columns: string; target: string | null; on_delete: string }>`
      SELECT c.contype,
             (SELECT string_agg(attname, ',') FROM pg_attribute
               WHERE attrelid = c.conrelid AND attnum = ANY (c.conkey)) AS columns,
             c.confrelid::regclass::text AS target,
             c.confdeltype AS on_delete
      FROM pg_constraint c
      WHERE c.conrelid = 'public.task_snapshots'::regclass
      ORDER BY c.contype`.execute(db);
    expect(constraints.rows).toEqual([
      { contype: 'f', columns: 'task_id', target: 'tasks', on_delete: 'c' },
      { contype: 'p', columns: 'task_id', target: '-', on_delete: ' ' },
    ]);
  });

  it('has the ordinary build reasons first, then the three task reasons', async () => {
    const values = await sql<{ enumlabel: string }>`
      SELECT enumlabel FROM pg_enum WHERE enumtypid = 'build_reason'::regtype ORDER BY enumsortorder`.execute(db);
    // The TypeScript list the API validates against is the database's, in the database's order.
    expect(values.rows.map((r) => r.enumlabel)).toEqual([...buildReasons]);
    expect(buildReasons.indexOf('initiator')).toBe(0);
    expect(buildReasons.slice(-3)).toEqual(['task_auto_pause', 'task_manual_pause', 'task_resume']);
  });

  it.each([
    ['workspace_transition', workspaceTransitions],
    ['provisioner_job_status', jobStatuses],
    ['user_role', userRoles],
    ['api_key_scope', apiKeyScopes],
  ] as const)('has the domain’s values, in its order, in the enum %s', async (type, values) => {
    const { rows } = await sql<{ enumlabel: string }>`
      SELECT enumlabel FROM pg_enum WHERE enumtypid = ${type}::regtype ORDER BY enumsortorder`.execute(db);
    expect(rows.map((r) => r.enumlabel)).toEqual([...values]);
  });

  it('deletes a task’s snapshot with the task', async () => {
    const { taskId } = await insertTaskRows(db);
    await db
      .insertInto('task_snapshots')
      .values({ task_id: taskId, log_snapshot: JSON.stringify({ format: 'agentapi', data: { messages: [] } }) })
      .execute();
    await db.deleteFrom('tasks').where('id', '=', taskId).execute();
    const left = await db.selectFrom('task_snapshots').where('task_id', '=', taskId).selectAll().execute();
    expect(left).toEqual([]);
  });

  it('refuses a snapshot for a task that does not exist', async () => {
    await expect(
      db
        .insertInto('task_snapshots')
        .values({ task_id: '00000000-0000-4000-8000-000000000000', log_snapshot: '{}' })
        .execute(),
    ).rejects.toThrow(/foreign key/);
  });

  it('keeps build numbers unique and gap-free per workspace', async () => {
    const { workspaceId } = await insertTaskRows(db);
    const build = (n: number) =>
      db
        .insertInto('workspace_builds')
        .values({ workspace_id: workspaceId, build_number: n, transition: 'start' })
        .execute();
    await build(1);
    await expect(build(1)).rejects.toThrow();
    await expect(build(3)).rejects.toThrow(/not the next one/);
    await build(2);
    const numbers = await db
      .selectFrom('workspace_builds')
      .where('workspace_id', '=', workspaceId)
      .select('build_number')
      .orderBy('build_number')
      .execute();
    expect(numbers.map((r) => r.build_number)).toEqual([1, 2]);
  });

  it('refuses a build whose job status contradicts its times', async () => {
    const { workspaceId } = await insertTaskRows(db);
    await expect(
      db
        .insertInto('workspace_builds')
        .values({ workspace_id: workspaceId, build_number: 1, transition: 'stop', job_status: 'failed' })
        .execute(),
    ).rejects.toThrow(/check constraint/);
  });

  it('makes task names unique per owner, case-insensitively, among live tasks', async () => {
    const { userId, taskId } = await insertTaskRows(db, 'Fix-Login');
    const workspace = await db
      .insertInto('workspaces')
      .values({ owner_id: userId, name: 'w2' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const insert = () =>
      db
        .insertInto('tasks')
        .values({
          owner_id: userId,
          workspace_id: workspace.id,
          name: 'fix-login',
          prompt: '',
          agent_url: 'http://127.0.0.1:1',
        })
        .execute();
    await expect(insert()).rejects.toThrow(/tasks_owner_name_live_idx/);
    await db.updateTable('tasks').set({ deleted_at: new Date() }).where('id', '=', taskId).execute();
    await insert();
  });
});
