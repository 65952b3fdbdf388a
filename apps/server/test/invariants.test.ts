import { describe, expect, it } from 'vitest';
import { insertTaskRows } from './fixtures.ts';
import { useDatabase } from './harness.ts';
import { invariantViolations } from './invariants.ts';

// The checker the race and fault suites rely on must itself catch what it claims to.
describe('invariantViolations', () => {
  const database = useDatabase('pglite');

  it('reports builds without audit records, repeated transitions and snapshots of deleted tasks', async () => {
    const { workspaceId, taskId } = await insertTaskRows(database.db);
    for (const [n, transition] of [
      [1, 'start'],
      [2, 'stop'],
      [3, 'stop'],
    ] as const) {
      await database.db
        .insertInto('workspace_builds')
        .values({ workspace_id: workspaceId, build_number: n, transition })
        .execute();
    }
    await database.db.insertInto('task_snapshots').values({ task_id: taskId, log_snapshot: '{}' }).execute();
    await database.db.updateTable('tasks').set({ deleted_at: new Date() }).where('id', '=', taskId).execute();
    const violations = await invariantViolations(database.db);
    expect(violations.filter((v) => v.startsWith('two builds in a row'))).toHaveLength(1);
    expect(violations.filter((v) => v.startsWith('a build without exactly one audit record'))).toHaveLength(3);
    expect(violations.filter((v) => v.startsWith('a snapshot belongs to a deleted task'))).toEqual([
      `a snapshot belongs to a deleted task: ${taskId}`,
    ]);
  });
});
