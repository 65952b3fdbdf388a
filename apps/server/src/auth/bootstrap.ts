import { findApiKey, insertApiKey } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import { anyUserExists, findUserByName, insertUser, lockAdminBootstrap } from '../db/users.ts';
import { generateApiKey, keyDigest } from './keys.ts';

export type BootstrapResult =
  | { kind: 'token'; userId: string; created: boolean }
  | { kind: 'generated'; userId: string; key: string }
  | { kind: 'none' };

/**
 * First start. With `adminToken` (HIATUS_ADMIN_TOKEN), an admin holding that key exists afterwards.
 * Without it, when no user exists yet, an admin is created with a fresh key, which the caller
 * prints once. Servers starting together agree through a transaction-scoped advisory lock.
 */
export async function bootstrapAdmin(db: Db, adminToken: string | undefined): Promise<BootstrapResult> {
  return db.transaction().execute(async (trx) => {
    await lockAdminBootstrap(trx);
    if (adminToken) {
      const { id, hash } = keyDigest(adminToken);
      const existing = await findApiKey(trx, id);
      if (existing) return { kind: 'token', userId: existing.userId, created: false };
      const admin = await ensureAdminUser(trx);
      await insertApiKey(trx, { id, userId: admin, name: 'HIATUS_ADMIN_TOKEN', secretHash: hash });
      return { kind: 'token', userId: admin, created: true };
    }
    if (await anyUserExists(trx)) return { kind: 'none' };
    const admin = await ensureAdminUser(trx);
    const key = generateApiKey();
    const { id, hash } = keyDigest(key);
    await insertApiKey(trx, { id, userId: admin, name: 'first start', secretHash: hash });
    return { kind: 'generated', userId: admin, key };
  });
}

async function ensureAdminUser(trx: Db): Promise<string> {
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
