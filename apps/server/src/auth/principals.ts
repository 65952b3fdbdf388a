import type { KeyBook, KeyUseLog } from '../app.ts';
import { findKeyForAuth, touchApiKeys } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import type { ApiKeyScope, RequestOrigin, UserActor, VerifiedKey } from '../domain/actor.ts';
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
 * outside (the reason is for logs). The hash is compared in constant time. With a `book`, a key
 * verified recently costs no query (a revocation evicts it everywhere at once: see VerifiedKeys),
 * and its use is noted for the next background write instead of written beside the request.
 */
export async function authenticate(
  db: Db,
  key: string,
  origin?: RequestOrigin,
  book?: KeyBook,
): Promise<Authentication> {
  const { id, hash } = keyDigest(key);
  let verified = book?.verified.get(id);
  if (!verified) {
    const mark = book?.verified.mark() ?? 0;
    const row = await findKeyForAuth(db, id);
    if (!row || !hashesMatch(row.secretHash, hash)) return { ok: false, reason: 'unknown key' };
    if (row.revoked) return { ok: false, reason: 'revoked key' };
    if (row.expired) return { ok: false, reason: 'expired key' };
    const { secretHash, expiresAt, scope, taskId, userId, role } = row;
    verified = { id, secretHash, expiresAt: expiresAt?.getTime() ?? null, scope, taskId, userId, role };
    book?.verified.remember(verified, mark);
  } else if (!hashesMatch(verified.secretHash, hash)) {
    return { ok: false, reason: 'unknown key' };
  }
  book?.uses.note(verified.id);
  return { ok: true, principal: principalOf(verified, origin) };
}

function principalOf(key: VerifiedKey, origin: RequestOrigin | undefined): Principal {
  return {
    actor: { kind: 'user', userId: key.userId, role: key.role, origin },
    keyId: key.id,
    scope: key.scope,
    taskId: key.taskId,
  };
}

/** Writes the key uses noted since the last call, in one statement (a background loop calls it). */
export async function writeKeyUses(db: Db, uses: KeyUseLog): Promise<number> {
  const ids = uses.take();
  await touchApiKeys(db, ids, uses.resolutionMs);
  return ids.length;
}
