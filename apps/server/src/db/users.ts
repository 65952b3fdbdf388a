import type { Selectable } from 'kysely';
import type { Db } from './connection.ts';
import type { UserRole, Users } from './schema.ts';

export type User = { id: string; username: string; role: UserRole; createdAt: Date };

function toUser(row: Selectable<Users>): User {
  return { id: row.id, username: row.username, role: row.role, createdAt: row.created_at };
}

export async function insertUser(db: Db, input: { username: string; role?: UserRole }): Promise<User> {
  const row = await db
    .insertInto('users')
    .values({ username: input.username, role: input.role ?? 'member' })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toUser(row);
}

export async function findUser(db: Db, id: string): Promise<User | undefined> {
  const row = await db.selectFrom('users').where('id', '=', id).selectAll().executeTakeFirst();
  return row && toUser(row);
}
