import { sql } from 'kysely';
import type { Db } from '../db/connection.ts';
import type { ApiKeyScope } from '../db/schema.ts';
import type { Actor, RequestOrigin } from '../lifecycle/actor.ts';
import { hashesMatch, keyDigest } from './keys.ts';

/** Who a request speaks for, and what its key lets it do. */
export type Principal = {
  actor: Actor & { kind: 'user' };
  keyId: string;
  scope: ApiKeyScope;
  /** For a workspace key: the one task it speaks for. */
  taskId: string | null;
};

export type Authentication = { ok: true; principal: Principal } | { ok: false; reason: string };

/**
 * Finds the key a request presents: unknown, revoked and expired keys are refused alike from the
 * outside (the reason is for logs). The hash is compared in constant time.
 */
export async function authenticate(db: Db, key: string, origin?: RequestOrigin): Promise<Authentication> {
  const { id, hash } = keyDigest(key);
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
  if (!row || !hashesMatch(row.secret_hash, hash)) return { ok: false, reason: 'unknown key' };
  if (row.revoked_at) return { ok: false, reason: 'revoked key' };
  if (row.expired) return { ok: false, reason: 'expired key' };
  // Cheap bookkeeping: at most one write a minute per key, and never in the request's way.
  void db
    .updateTable('api_keys')
    .set({ last_used_at: sql`NOW()` })
    .where('id', '=', row.id)
    .where((eb) =>
      eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', sql<Date>`NOW() - interval '1 minute'`)]),
    )
    .execute()
    .catch(() => undefined);
  return {
    ok: true,
    principal: {
      actor: { kind: 'user', userId: row.user_id, role: row.role, origin },
      keyId: row.id,
      scope: row.scope,
      taskId: row.task_id,
    },
  };
}
