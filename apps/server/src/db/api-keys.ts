import { type Selectable, sql } from 'kysely';
import type { ApiKeyScope, UserRole } from '../domain/actor.ts';
import type { Db } from './connection.ts';
import type { ApiKeys } from './schema.ts';

export type ApiKeyInfo = {
  id: string;
  userId: string;
  name: string;
  scope: ApiKeyScope;
  taskId: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
};

function toApiKeyInfo(row: Selectable<ApiKeys>): ApiKeyInfo {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    scope: row.scope,
    taskId: row.task_id,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export type NewApiKeyRow = {
  id: string;
  userId: string;
  secretHash: Buffer;
  name?: string;
  scope?: ApiKeyScope;
  taskId?: string | null;
  expiresAt?: Date | null;
};

export async function insertApiKey(db: Db, key: NewApiKeyRow): Promise<ApiKeyInfo> {
  const row = await db
    .insertInto('api_keys')
    .values({
      id: key.id,
      user_id: key.userId,
      name: key.name ?? '',
      secret_hash: key.secretHash,
      scope: key.scope ?? 'full',
      task_id: key.taskId ?? null,
      expires_at: key.expiresAt ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toApiKeyInfo(row);
}

/** A key by id; with `forUpdate`, its row lock is held for the rest of the transaction. */
export async function findApiKey(
  db: Db,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<ApiKeyInfo | undefined> {
  const query = db.selectFrom('api_keys').where('id', '=', id).selectAll();
  const row = await (options.forUpdate ? query.forUpdate() : query).executeTakeFirst();
  return row && toApiKeyInfo(row);
}

export async function revokeApiKeyRow(trx: Db, id: string): Promise<ApiKeyInfo> {
  const row = await trx
    .updateTable('api_keys')
    .set({ revoked_at: sql`NOW()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toApiKeyInfo(row);
}

/** What authentication needs of a key: its hash, state, scope and its user's role. */
export type KeyForAuth = {
  id: string;
  secretHash: Buffer;
  revoked: boolean;
  expired: boolean;
  scope: ApiKeyScope;
  taskId: string | null;
  userId: string;
  role: UserRole;
};

export async function findKeyForAuth(db: Db, id: string): Promise<KeyForAuth | undefined> {
  const row = await db
    .selectFrom('api_keys as k')
    .innerJoin('users as u', 'u.id', 'k.user_id')
    .where('k.id', '=', id)
    .select(['k.id', 'k.secret_hash', 'k.revoked_at', 'k.scope', 'k.task_id', 'u.id as user_id', 'u.role'])
    .select(sql<boolean>`k.expires_at IS NOT NULL AND k.expires_at <= NOW()`.as('expired'))
    .executeTakeFirst();
  return (
    row && {
      id: row.id,
      secretHash: row.secret_hash,
      revoked: row.revoked_at !== null,
      expired: row.expired,
      scope: row.scope,
      taskId: row.task_id,
      userId: row.user_id,
      role: row.role,
    }
  );
}

/** Records that a key was used, at most once a minute (the filter makes other calls no-ops). */
export async function touchApiKey(db: Db, id: string): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ last_used_at: sql`NOW()` })
    .where('id', '=', id)
    .where((eb) =>
      eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', sql<Date>`NOW() - interval '1 minute'`)]),
    )
    .execute();
}
