import { findKeyForAuth, isApiKeyUsable, touchApiKey } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import { defaults } from '../defaults.ts';
import type { ApiKeyScope, RequestOrigin, UserActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
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
 * outside (the reason is for logs). The hash is compared in constant time. A request writes
 * nothing: the key's last use is recorded only when the one on record is older than
 * `defaults.keyLastUsedResolutionMs`.
 */
export async function authenticate(db: Db, key: string, origin?: RequestOrigin): Promise<Authentication> {
  const { id, hash } = keyDigest(key);
  const resolutionMs = defaults.keyLastUsedResolutionMs;
  const row = await findKeyForAuth(db, id, resolutionMs);
  if (!row || !hashesMatch(row.secretHash, hash)) return { ok: false, reason: 'unknown key' };
  if (row.revoked) return { ok: false, reason: 'revoked key' };
  if (row.expired) return { ok: false, reason: 'expired key' };
  // Cheap bookkeeping, never in the request's way.
  if (!row.recentlyUsed) void touchApiKey(db, row.id, resolutionMs).catch(() => undefined);
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

/**
 * Refuses a long-lived call (a watch) once the key it was opened with is revoked or expired:
 * it was checked when the call began, and is checked again while the call lasts.
 */
export async function assertKeyStillValid(db: Db, keyId: string): Promise<void> {
  if (!(await isApiKeyUsable(db, keyId))) {
    throw new HiatusError('unauthorized', 'the API key was revoked or has expired: this stream has ended');
  }
}
