import { randomUUID } from 'node:crypto';
import type { Db } from '../src/db/connection.ts';
import { insertTaskWithWorkspace } from '../src/db/tasks.ts';
import { insertUser } from '../src/db/users.ts';

/** Rows only, below the services: a user, and a task with its workspace but no build yet. */
export async function insertTaskRows(db: Db, name = `task-${randomUUID().slice(0, 8)}`) {
  const user = await insertUser(db, { username: `user-${randomUUID().slice(0, 8)}` });
  const task = await insertTaskWithWorkspace(db, {
    ownerId: user.id,
    name,
    prompt: 'fix the tests',
    agentUrl: 'http://127.0.0.1:3284',
    idleTimeoutSeconds: null,
  });
  return { userId: user.id, workspaceId: task.workspaceId, taskId: task.id };
}
