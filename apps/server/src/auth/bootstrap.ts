import { sql } from 'kysely';
import type { Db } from '../db/connection.ts';
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
    await sql`SELECT pg_advisory_xact_lock(hashtext('hiatus.bootstrap'))`.execute(trx);
    if (adminToken) {
      const { id, hash } = keyDigest(adminToken);
      const existing = await trx.selectFrom('api_keys').where('id', '=', id).select('user_id').executeTakeFirst();
      if (existing) return { kind: 'token', userId: existing.user_id, created: false };
      const admin = await ensureAdminUser(trx);
      await trx
        .insertInto('api_keys')
        .values({ id, user_id: admin, name: 'HIATUS_ADMIN_TOKEN', secret_hash: hash })
        .execute();
      return { kind: 'token', userId: admin, created: true };
    }
    const anyUser = await trx.selectFrom('users').select('id').limit(1).executeTakeFirst();
    if (anyUser) return { kind: 'none' };
    const admin = await ensureAdminUser(trx);
    const key = generateApiKey();
    const { id, hash } = keyDigest(key);
    await trx.insertInto('api_keys').values({ id, user_id: admin, name: 'first start', secret_hash: hash }).execute();
    return { kind: 'generated', userId: admin, key };
  });
}

async function ensureAdminUser(trx: Db): Promise<string> {
  const existing = await trx
    .selectFrom('users')
    .where('username', '=', 'admin')
    .select(['id', 'role'])
    .executeTakeFirst();
  if (existing) {
    // Never promote a member behind the operator's back.
    if (existing.role !== 'admin')
      throw new Error('a member named "admin" exists: the admin token cannot be given to them');
    return existing.id;
  }
  const row = await trx
    .insertInto('users')
    .values({ username: 'admin', role: 'admin' })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}
