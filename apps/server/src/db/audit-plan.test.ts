import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, postgresServerUrl, type TestDatabase } from '../../test/databases.ts';
import { type AuditFilter, auditLogQuery, listAuditLogs } from './audit.ts';
import type { Db } from './connection.ts';

const rows = 1_000_000;

/** Every plan node's type and index, flattened. */
function planNodes(plan: Record<string, unknown>): Array<{ type: string; index?: string }> {
  const children = (plan.Plans as Record<string, unknown>[] | undefined) ?? [];
  return [
    { type: plan['Node Type'] as string, index: plan['Index Name'] as string | undefined },
    ...children.flatMap(planNodes),
  ];
}

// A million records: the size audit.list must stay fast at. PostgreSQL only (the planner's choice
// at this size is the point); the EXPLAIN output is printed so the plan can be read in the log.
describe.runIf(postgresServerUrl())('audit.list with a million records', () => {
  let database: TestDatabase & { db: Db };
  let someActor: string;
  let someResource: string;
  let rareActor: string;
  beforeAll(async () => {
    database = await createMigratedDatabase('postgres');
    const users = await database.db
      .insertInto('users')
      .values(Array.from({ length: 50 }, (_, i) => ({ username: `user${i}` })))
      .returning('id')
      .execute();
    someActor = users[7]!.id;
    await sql`
      INSERT INTO audit_logs (occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, diff)
      SELECT NOW() - (n || ' seconds')::interval,
             CASE WHEN n % 10 = 0 THEN 'system'::audit_actor_kind ELSE 'user' END,
             CASE WHEN n % 10 = 0 THEN NULL ELSE (${sql.val(users.map((u) => u.id))}::uuid[])[1 + n % 50] END,
             (ARRAY['task.create', 'task.pause', 'task.resume', 'task.delete', 'build.succeeded'])[1 + n % 5],
             'task',
             md5((n % 20000)::text)::uuid,
             (ARRAY['initiator', 'task_manual_pause', 'task_resume', NULL, 'task_auto_pause']::build_reason[])[1 + n % 5],
             '{}'::jsonb
      FROM generate_series(1, ${rows}) AS n`.execute(database.db);
    // One quiet user with only a few records among the million.
    rareActor = (
      await database.db.insertInto('users').values({ username: 'quiet' }).returning('id').executeTakeFirstOrThrow()
    ).id;
    await sql`
      INSERT INTO audit_logs (occurred_at, actor_kind, actor_id, action, resource_type, diff)
      SELECT NOW() - (n || ' days')::interval, 'user', ${rareActor}, 'task.create', 'task', '{}'::jsonb
      FROM generate_series(1, 30) AS n`.execute(database.db);
    await sql`ANALYZE audit_logs`.execute(database.db);
    someResource = (await sql<{ id: string }>`SELECT md5('4242')::uuid AS id`.execute(database.db)).rows[0]!.id;
  }, 120_000);
  afterAll(() => database.drop());

  // For a value that is common, walking the primary key newest first and stopping after a page is
  // as good as the filter's own index, and the planner may pick either; for a rare one, only the
  // filter's index avoids reading much of the table.
  const filters: Array<[string, () => AuditFilter, string[]]> = [
    ['newest first, no filter', () => ({ limit: 50 }), ['audit_logs_pkey']],
    ['by a busy actor', () => ({ actorId: someActor, limit: 50 }), ['audit_logs_actor_idx', 'audit_logs_pkey']],
    ['by a quiet actor', () => ({ actorId: rareActor, limit: 50 }), ['audit_logs_actor_idx']],
    [
      'by a quiet actor, second page',
      () => ({ actorId: rareActor, limit: 10, beforeId: '1000020' }),
      ['audit_logs_actor_idx'],
    ],
    ['by resource', () => ({ resourceId: someResource, limit: 50 }), ['audit_logs_resource_idx']],
    ['by action', () => ({ action: 'task.pause', limit: 50 }), ['audit_logs_action_idx', 'audit_logs_pkey']],
    [
      'by build reason',
      () => ({ buildReason: 'task_auto_pause', limit: 50 }),
      ['audit_logs_build_reason_idx', 'audit_logs_pkey'],
    ],
    [
      'by time range',
      () => ({ since: new Date(Date.now() - 3600_000), limit: 50 }),
      ['audit_logs_pkey', 'audit_logs_occurred_at_idx'],
    ],
  ];

  it.each(filters)('%s reads an index, not the table', async (what, filter, indexes) => {
    const compiled = auditLogQuery(database.db, filter()).compile();
    const explained = await database.db.executeQuery<{
      'QUERY PLAN': [{ Plan: Record<string, unknown>; 'Execution Time': number }];
    }>({
      ...compiled,
      sql: `EXPLAIN (ANALYZE, FORMAT JSON) ${compiled.sql}`,
    });
    const [{ Plan, 'Execution Time': ms }] = explained.rows[0]!['QUERY PLAN'];
    const nodes = planNodes(Plan);
    process.stdout.write(
      `audit.list ${what}: ${nodes.map((n) => `${n.type}${n.index ? ` on ${n.index}` : ''}`).join(' > ')}; ${ms.toFixed(2)} ms\n`,
    );
    expect(nodes.some((n) => n.index !== undefined && indexes.includes(n.index))).toBe(true);
    expect(nodes.some((n) => n.type === 'Seq Scan')).toBe(false);
    const page = await listAuditLogs(database.db, filter());
    expect(page.items.length).toBeGreaterThan(0);
  });
});
