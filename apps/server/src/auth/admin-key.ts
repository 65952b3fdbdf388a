import { audit } from '../audit/audit.ts';
import { insertApiKey, revokeOtherKeys } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import { lockAdminBootstrap } from '../db/users.ts';
import { systemActor } from '../domain/actor.ts';
import { auditSystemRevocations, ensureAdminUser } from './bootstrap.ts';
import { generateApiKey, keyDigest } from './keys.ts';

export type MintedAdminKey = { userId: string; keyId: string; key: string; revoked: string[] };

/**
 * A fresh key for the admin "admin" (created when there is none), for an operator with database
 * access who lost theirs: `pnpm admin:key`. With `revokeOthers`, the admin's other live keys are
 * revoked in the same transaction. Both are audited as the system.
 */
export async function mintAdminKey(db: Db, options: { revokeOthers?: boolean } = {}): Promise<MintedAdminKey> {
  return db.transaction().execute(async (trx) => {
    await lockAdminBootstrap(trx);
    const userId = await ensureAdminUser(trx);
    const key = generateApiKey();
    const { id, hash } = keyDigest(key);
    const created = await insertApiKey(trx, { id, userId, name: 'pnpm admin:key', secretHash: hash });
    await audit(trx, systemActor, {
      action: 'api_key.create',
      resourceType: 'api_key',
      resourceId: id,
      diff: { userId, name: created.name, scope: created.scope, taskId: null, expiresAt: null },
    });
    const revoked = options.revokeOthers ? await revokeOtherKeys(trx, userId, id) : [];
    await auditSystemRevocations(trx, revoked, 'pnpm admin:key --revoke-others');
    return { userId, keyId: id, key, revoked: revoked.map((k) => k.id) };
  });
}

/**
 * The admin key framed so it stands out among log lines: plain text, for a person, shown once.
 * The server prints it on first start; `pnpm admin:key` prints a fresh one.
 */
export function adminKeyBox(key: string, options: { title?: string; notes?: string[] } = {}): string {
  const lines = [
    options.title ?? 'A new admin API key for "admin", shown this once:',
    '',
    `  ${key}`,
    '',
    'Use it as "Authorization: Bearer <key>". Keep it safe: it is not stored.',
    'Lost it? `pnpm admin:key` mints a new one (it needs database access);',
    "`pnpm admin:key --revoke-others` also revokes the admin's other keys.",
    ...(options.notes ?? []),
  ];
  const width = Math.max(...lines.map((l) => l.length));
  const rule = '═'.repeat(width + 2);
  const body = lines.map((l) => `║ ${l.padEnd(width)} ║`);
  return `\n╔${rule}╗\n${body.join('\n')}\n╚${rule}╝\n\n`;
}
