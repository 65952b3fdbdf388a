import { randomUUID } from 'node:crypto';
import type { Db } from '../src/db/connection.ts';

/** Inserts a user, a workspace and a task owned by that user; returns their ids. */
export async function insertTaskRows(db: Db, name = `task-${randomUUID().slice(0, 8)}`) {
  const user = await db
    .insertInto('users')
    .values({ username: `user-${randomUUID().slice(0, 8)}` })
    .returning('id')
    .executeTakeFirstOrThrow();
  const workspace = await db
    .insertInto('workspaces')
    .values({ owner_id: user.id, name })
    .returning('id')
    .executeTakeFirstOrThrow();
  const task = await db
    .insertInto('tasks')
    .values({
      owner_id: user.id,
      workspace_id: workspace.id,
      name,
      prompt: 'fix the tests',
      agent_url: 'http://127.0.0.1:3284',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { userId: user.id, workspaceId: workspace.id, taskId: task.id };
}
