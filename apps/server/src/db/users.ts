import { type Selectable, sql } from 'kysely';
import type { UserRole } from '../domain/actor.ts';
import type { Db } from './connection.ts';
import type { Users } from './schema.ts';

export type User = { id: string; username: string; role: UserRole; createdAt: Date };

function toUser(row: Selectable<Users>): User {
  return { id: row.id, username: row.username, role: row.role, createdAt: row.created_at };
}

/** The unique index on user names. */
export const usernameConstraint = 'users_username_key';

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

export async function findUserByName(db: Db, username: string): Promise<User | undefined> {
  const row = await db.selectFrom('users').where('username', '=', username).selectAll().executeTakeFirst();
  return row && toUser(row);
}

export async function anyUserExists(db: Db): Promise<boolean> {
  return (await db.selectFrom('users').select('id').limit(1).executeTakeFirst()) !== undefined;
}

/** Serializes first-start admin creation across servers starting together, until the transaction ends. */
export async function lockAdminBootstrap(trx: Db): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext('hiatus.bootstrap'))`.execute(trx);
}

/** Users by name, a page after the user `afterId` (the previous page's last). */
export async function listUsers(
  db: Db,
  page: { limit: number; afterId?: string },
): Promise<{ items: User[]; more: boolean }> {
  let query = db.selectFrom('users as u').selectAll('u');
  if (page.afterId) {
    query = query.where(sql<boolean>`u.username > (SELECT a.username FROM users a WHERE a.id = ${page.afterId})`);
  }
  const rows = await query
    .orderBy('u.username')
    .limit(page.limit + 1)
    .execute();
  return { items: rows.slice(0, page.limit).map(toUser), more: rows.length > page.limit };
}
