import { findKeyForAuth, touchApiKey } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import type { ApiKeyScope, RequestOrigin, UserActor } from '../domain/actor.ts';
import { hashesMatch, keyDigest } from './keys.ts';

/** Who a request speaks for, and what its key lets it do. */
export type Principal = {
  actor: UserActor;
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
  const row = await findKeyForAuth(db, id);
  if (!row || !hashesMatch(row.secretHash, hash)) return { ok: false, reason: 'unknown key' };
  if (row.revoked) return { ok: false, reason: 'revoked key' };
  if (row.expired) return { ok: false, reason: 'expired key' };
  // Cheap bookkeeping, never in the request's way.
  void touchApiKey(db, row.id).catch(() => undefined);
  return {
    ok: true,
    principal: {
      actor: { kind: 'user', userId: row.userId, role: row.role, origin },
      keyId: row.id,
      scope: row.scope,
      taskId: row.taskId,
    },
  };
}
