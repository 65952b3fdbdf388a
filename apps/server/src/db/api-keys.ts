import { type Selectable, sql } from 'kysely';
import type { ApiKeyScope, UserRole } from '../domain/actor.ts';
import type { Db } from './connection.ts';
import { announceChange } from './events.ts';
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
  await announceRevokedKeys(trx, [row.id]);
  return toApiKeyInfo(row);
}

/**
 * Tells every process, when (and only if) the transaction commits, that these keys were revoked:
 * they drop them from their verified keys at once. A notification carries at most 8,000 bytes,
 * so many ids go in several.
 */
async function announceRevokedKeys(trx: Db, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 100) await announceChange(trx, { revokedKeyIds: ids.slice(i, i + 100) });
}

/** What authentication needs of a key: its hash, state, scope and its user's role. */
export type KeyForAuth = {
  id: string;
  secretHash: Buffer;
  revoked: boolean;
  expired: boolean;
  expiresAt: Date | null;
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
    .select([
      'k.id',
      'k.secret_hash',
      'k.revoked_at',
      'k.expires_at',
      'k.scope',
      'k.task_id',
      'u.id as user_id',
      'u.role',
    ])
    .select(sql<boolean>`k.expires_at IS NOT NULL AND k.expires_at <= NOW()`.as('expired'))
    .executeTakeFirst();
  return (
    row && {
      id: row.id,
      secretHash: row.secret_hash,
      revoked: row.revoked_at !== null,
      expired: row.expired,
      expiresAt: row.expires_at,
      scope: row.scope,
      taskId: row.task_id,
      userId: row.user_id,
      role: row.role,
    }
  );
}

/**
 * Records that these keys were used, each at most once per `resolutionMs`: the filter makes
 * calls in between write no row (processes flushing the same key at once update it once).
 */
export async function touchApiKeys(db: Db, ids: readonly string[], resolutionMs: number): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('api_keys')
    .set({ last_used_at: sql`NOW()` })
    .where('id', 'in', ids)
    .where((eb) =>
      eb.or([
        eb('last_used_at', 'is', null),
        eb('last_used_at', '<=', sql<Date>`NOW() - make_interval(secs => ${resolutionMs / 1000})`),
      ]),
    )
    .execute();
}

/** Whether a key still lets its holder in: it exists, is not revoked and has not expired. */
export async function isApiKeyUsable(db: Db, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('api_keys')
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`NOW()`)]))
    .select('id')
    .executeTakeFirst();
  return row !== undefined;
}

/** A user's keys, newest first, a page after the key `afterId` (the previous page's last). */
export async function listApiKeys(
  db: Db,
  userId: string,
  page: { limit: number; afterId?: string },
): Promise<{ items: ApiKeyInfo[]; more: boolean }> {
  let query = db.selectFrom('api_keys as k').where('k.user_id', '=', userId).selectAll('k');
  if (page.afterId) {
    query = query.where(
      sql<boolean>`(k.created_at, k.id) < (SELECT a.created_at, a.id FROM api_keys a WHERE a.id = ${page.afterId})`,
    );
  }
  const rows = await query
    .orderBy('k.created_at', 'desc')
    .orderBy('k.id', 'desc')
    .limit(page.limit + 1)
    .execute();
  return { items: rows.slice(0, page.limit).map(toApiKeyInfo), more: rows.length > page.limit };
}

/**
 * Revokes the live keys of `userId` except `keepId` (only those named `name`, when given), and
 * returns them: a changed HIATUS_ADMIN_TOKEN retires its old key; `pnpm admin:key --revoke-others`
 * all the admin's others.
 */
export async function revokeOtherKeys(
  trx: Db,
  userId: string,
  keepId: string,
  options: { name?: string } = {},
): Promise<ApiKeyInfo[]> {
  let query = trx
    .updateTable('api_keys')
    .set({ revoked_at: sql`NOW()` })
    .where('user_id', '=', userId)
    .where('id', '!=', keepId)
    .where('revoked_at', 'is', null);
  if (options.name !== undefined) query = query.where('name', '=', options.name);
  const revoked = await query.returningAll().execute();
  await announceRevokedKeys(
    trx,
    revoked.map((row) => row.id),
  );
  return revoked.map(toApiKeyInfo);
}
