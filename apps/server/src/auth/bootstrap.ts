import { audit, changed } from '../audit/audit.ts';
import { type ApiKeyInfo, findApiKey, insertApiKey, revokeOtherKeys } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import { anyUserExists, findUserByName, insertUser, lockAdminBootstrap } from '../db/users.ts';
import { systemActor } from '../domain/actor.ts';
import { generateApiKey, keyDigest } from './keys.ts';

/** The name of the key made of HIATUS_ADMIN_TOKEN: reserved, so no other key is taken for it. */
export const adminTokenKeyName = 'HIATUS_ADMIN_TOKEN';

export type BootstrapResult =
  | {
      kind: 'token';
      userId: string;
      created: boolean;
      /** Keys made of earlier values of the token, revoked now that it changed. */
      retired: string[];
      /** The token's key was revoked (through the API): it lets no one in until the token changes. */
      revoked: boolean;
    }
  | { kind: 'generated'; userId: string; key: string }
  | { kind: 'none' };

/**
 * First start. With `adminToken` (HIATUS_ADMIN_TOKEN), an admin holding that key exists afterwards,
 * and the keys made of the token's earlier values are revoked (audited): changing the variable
 * retires the old value. Without it, when no user exists yet, an admin is created with a fresh
 * key, which the caller prints once. Servers starting together agree through a
 * transaction-scoped advisory lock.
 */
export async function bootstrapAdmin(db: Db, adminToken: string | undefined): Promise<BootstrapResult> {
  return db.transaction().execute(async (trx) => {
    await lockAdminBootstrap(trx);
    if (adminToken) {
      const { id, hash } = keyDigest(adminToken);
      const existing = await findApiKey(trx, id);
      const userId = existing?.userId ?? (await ensureAdminUser(trx));
      if (!existing) await insertApiKey(trx, { id, userId, name: adminTokenKeyName, secretHash: hash });
      const retired = await revokeOtherKeys(trx, userId, id, { name: adminTokenKeyName });
      await auditSystemRevocations(trx, retired, 'HIATUS_ADMIN_TOKEN changed');
      return {
        kind: 'token',
        userId,
        created: !existing,
        retired: retired.map((k) => k.id),
        revoked: existing?.revokedAt != null,
      };
    }
    if (await anyUserExists(trx)) return { kind: 'none' };
    const admin = await ensureAdminUser(trx);
    const key = generateApiKey();
    const { id, hash } = keyDigest(key);
    await insertApiKey(trx, { id, userId: admin, name: 'first start', secretHash: hash });
    return { kind: 'generated', userId: admin, key };
  });
}

/** The user named "admin", created (as an admin) when missing; a member of that name is refused. */
export async function ensureAdminUser(trx: Db): Promise<string> {
  const existing = await findUserByName(trx, 'admin');
  if (existing) {
    // Never promote a member behind the operator's back.
    if (existing.role !== 'admin') {
      throw new Error('a member named "admin" exists: the admin token cannot be given to them');
    }
    return existing.id;
  }
  return (await insertUser(trx, { username: 'admin', role: 'admin' })).id;
}

/** The audit records of keys the system revoked (`why`, in words), in the revoking transaction. */
export async function auditSystemRevocations(trx: Db, keys: readonly ApiKeyInfo[], why: string): Promise<void> {
  for (const key of keys) {
    await audit(trx, systemActor, {
      action: 'api_key.revoke',
      resourceType: 'api_key',
      resourceId: key.id,
      diff: { revokedAt: changed(null, key.revokedAt), why },
    });
  }
}
