import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, postgresServerUrl, type TestDatabase } from '../../test/databases.ts';
import { type AuditFilter, auditLogPartitions, auditLogQuery, listAuditLogs } from './audit.ts';
import type { Db } from './connection.ts';
import { createMonthPartition, listPartitions, monthStart } from './partitions.ts';

const rows = 1_000_000;

type PlanNode = { type: string; relation?: string; index?: string; rows: number };

/** Every plan node's type, relation, index and rows (all loops), flattened. */
function planNodes(plan: Record<string, unknown>): PlanNode[] {
  const children = (plan.Plans as Record<string, unknown>[] | undefined) ?? [];
  return [
    {
      type: plan['Node Type'] as string,
      relation: plan['Relation Name'] as string | undefined,
      index: plan['Index Name'] as string | undefined,
      rows: ((plan['Actual Rows'] as number) ?? 0) * ((plan['Actual Loops'] as number) ?? 1),
    },
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
  let partitions: string[] = [];
  /** The partitions without a record (the planner may read an empty table without an index). */
  let emptyPartitions: string[] = [];
  /** Each partition's index, by name, to the parent index it is a part of. */
  const indexFamily = new Map<string, string>();
  beforeAll(async () => {
    database = await createMigratedDatabase('postgres');
    const users = await database.db
      .insertInto('users')
      .values(Array.from({ length: 50 }, (_, i) => ({ username: `user${i}` })))
      .returning('id')
      .execute();
    someActor = users[7]!.id;
    // A year of history: a partition a month, as housekeeping would have made them month by month.
    for (let back = 12; back >= 0; back--) {
      await createMonthPartition(database.db, auditLogPartitions, monthStart(new Date(), -back), 10_000);
    }
    await sql`
      INSERT INTO audit_logs (occurred_at, actor_kind, actor_id, action, resource_type, resource_id, build_reason, diff)
      SELECT NOW() - (n * 30 || ' seconds')::interval,
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
    partitions = (await listPartitions(database.db, auditLogPartitions)).map((p) => p.name);
    // Each partition's indexes get generated names; they are the parent index's children.
    const children = await sql<{ parent: string; child: string }>`
      SELECT p.relname AS parent, c.relname AS child
      FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid
      WHERE p.relname LIKE 'audit_logs%' AND p.relkind = 'I'`.execute(database.db);
    for (const { parent, child } of children.rows) indexFamily.set(child, parent);
    const filled = await sql<{
      name: string;
    }>`SELECT DISTINCT tableoid::regclass::text AS name FROM audit_logs`.execute(database.db);
    emptyPartitions = partitions.filter((p) => !filled.rows.some((r) => r.name === p));
  }, 300_000);
  afterAll(() => database.drop());

  // For a value that is common, walking the primary key newest first and stopping after a page is
  // as good as the filter's own index, and the planner may pick either; for a rare one, only the
  // filter's index avoids reading much of the table.
  const filters: Array<[string, () => AuditFilter, string[], merged?: boolean]> = [
    ['newest first, no filter', () => ({ limit: 50 }), ['audit_logs_pkey'], true],
    ['by a busy actor', () => ({ actorId: someActor, limit: 50 }), ['audit_logs_actor_idx', 'audit_logs_pkey'], true],
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

  it.each(filters)('%s reads an index of each partition, not the table', async (what, filter, indexes, merged) => {
    const compiled = auditLogQuery(database.db, filter()).compile();
    const explained = await database.db.executeQuery<{
      'QUERY PLAN': [{ Plan: Record<string, unknown>; 'Execution Time': number }];
    }>({
      ...compiled,
      sql: `EXPLAIN (ANALYZE, FORMAT JSON) ${compiled.sql}`,
    });
    const [{ Plan, 'Execution Time': ms }] = explained.rows[0]!['QUERY PLAN'];
    const nodes = planNodes(Plan);
    const scans = nodes.filter((n) => n.relation !== undefined || n.index !== undefined);
    process.stdout.write(
      `audit.list ${what}: ${nodes
        .filter((n) => !n.relation && !n.index)
        .map((n) => n.type)
        .join(' > ')} over ${scans.length} scans (${[
        ...new Set(scans.map((n) => `${n.type} on ${indexFamily.get(n.index ?? '') ?? n.index ?? n.relation}`)),
      ].join(', ')}); ${scans.reduce((sum, n) => sum + n.rows, 0)} rows read; ${ms.toFixed(2)} ms\n`,
    );
    // Every partition with records is read through an index of its own that serves the filter (a
    // bitmap heap scan reads what its bitmap index scan found); only an empty one may be read whole.
    for (const scan of scans) {
      if (scan.type === 'Seq Scan') expect(emptyPartitions, `Seq Scan on ${scan.relation}`).toContain(scan.relation);
      else if (scan.index) expect(indexes, `${scan.type} on ${scan.index}`).toContain(indexFamily.get(scan.index));
    }
    // Each partition once: all of them, but for those a time range prunes.
    const partitionsRead = scans.filter((n) => n.relation).map((n) => n.relation);
    expect(new Set(partitionsRead).size).toBe(partitionsRead.length);
    if (!filter().since) expect([...partitionsRead].sort()).toEqual([...partitions].sort());
    // Newest first over every partition: the partitions' index orders merged, not a sort of the table.
    if (merged) expect(nodes.some((n) => n.type === 'Merge Append')).toBe(true);
    // A page, not the million: what the scans return stays far below the table's size.
    expect(scans.reduce((sum, n) => sum + n.rows, 0)).toBeLessThan(rows / 20);
    const page = await listAuditLogs(database.db, filter());
    expect(page.items.length).toBeGreaterThan(0);
  });
});
