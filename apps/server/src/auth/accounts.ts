import { sql } from 'kysely';
import type { ApiKeyScope, UserRole } from '../db/schema.ts';
import { findUser, type User } from '../db/users.ts';
import type { Actor } from '../lifecycle/actor.ts';
import { audit } from '../lifecycle/audit.ts';
import type { Lifecycle } from '../lifecycle/context.ts';
import { LifecycleError } from '../lifecycle/errors.ts';
import { getTask } from '../lifecycle/tasks.ts';
import { generateApiKey, keyDigest } from './keys.ts';

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

function requireAdmin(actor: Actor, what: string): void {
  if (actor.kind === 'user' && actor.role !== 'admin')
    throw new LifecycleError('forbidden', `only an admin may ${what}`);
}

/** Creates a user (admins only), audited. */
export async function createUser(
  lc: Lifecycle,
  actor: Actor,
  input: { username: string; role: UserRole },
): Promise<User> {
  requireAdmin(actor, 'create users');
  try {
    return await lc.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('users')
        .values({ username: input.username, role: input.role })
        .returningAll()
        .executeTakeFirstOrThrow();
      await audit(trx, actor, {
        action: 'user.create',
        resourceType: 'user',
        resourceId: row.id,
        diff: { username: input.username, role: input.role },
      });
      return { id: row.id, username: row.username, role: row.role, createdAt: row.created_at };
    });
  } catch (error) {
    if ((error as { constraint?: string }).constraint === 'users_username_key') {
      throw new LifecycleError('conflict', `the username "${input.username}" is taken`);
    }
    throw error;
  }
}

export type NewApiKey = {
  /** Whose key; defaults to the actor. Only an admin may name another user. */
  userId?: string;
  name?: string;
  scope?: ApiKeyScope;
  /** For a workspace key: the task whose workspace will hold it. */
  taskId?: string;
  expiresAt?: Date;
};

/**
 * Creates an API key and returns its secret, which is shown this once and never stored. Members
 * create their own keys; provisioner keys are for admins to hand out.
 */
export async function createApiKey(
  lc: Lifecycle,
  actor: Actor,
  input: NewApiKey,
): Promise<{ key: string; apiKey: ApiKeyInfo }> {
  if (actor.kind !== 'user') throw new LifecycleError('forbidden', 'keys belong to users');
  const userId = input.userId ?? actor.userId;
  const scope = input.scope ?? 'full';
  if (userId !== actor.userId) requireAdmin(actor, "create another user's keys");
  if (scope === 'provisioner') requireAdmin(actor, 'create provisioner keys');
  if ((scope === 'workspace') !== (input.taskId !== undefined)) {
    throw new LifecycleError('bad_input', 'a workspace key names its task (taskId), and only a workspace key does');
  }
  if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
    throw new LifecycleError('bad_input', 'expiresAt must be in the future');
  }
  if (!(await findUser(lc.db, userId))) throw new LifecycleError('not_found', `user ${userId} not found`);
  if (input.taskId) {
    const task = await getTask(lc, { kind: 'user', userId, role: 'member' }, input.taskId).catch(() => null);
    if (!task) throw new LifecycleError('not_found', `task ${input.taskId} not found`);
  }
  const key = generateApiKey();
  const { id, hash } = keyDigest(key);
  const apiKey = await lc.db.transaction().execute(async (trx) => {
    const row = await trx
      .insertInto('api_keys')
      .values({
        id,
        user_id: userId,
        name: input.name ?? '',
        secret_hash: hash,
        scope,
        task_id: input.taskId ?? null,
        expires_at: input.expiresAt ?? null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await audit(trx, actor, {
      action: 'api_key.create',
      resourceType: 'api_key',
      resourceId: row.id,
      diff: { userId, name: row.name, scope, taskId: row.task_id, expiresAt: row.expires_at },
    });
    return toApiKeyInfo(row);
  });
  return { key, apiKey };
}

/** Revokes a key: its owner or an admin may. Revoking twice is a conflict. */
export async function revokeApiKey(lc: Lifecycle, actor: Actor, keyId: string): Promise<ApiKeyInfo> {
  if (actor.kind !== 'user') throw new LifecycleError('forbidden', 'keys belong to users');
  return lc.db.transaction().execute(async (trx) => {
    const key = await trx.selectFrom('api_keys').where('id', '=', keyId).selectAll().forUpdate().executeTakeFirst();
    // Another member's key does not exist for them, as their tasks do not.
    if (!key || (key.user_id !== actor.userId && actor.role !== 'admin')) {
      throw new LifecycleError('not_found', `key ${keyId} not found`);
    }
    if (key.revoked_at) throw new LifecycleError('conflict', `key ${keyId} is already revoked`);
    const row = await trx
      .updateTable('api_keys')
      .set({ revoked_at: sql`NOW()` })
      .where('id', '=', keyId)
      .returningAll()
      .executeTakeFirstOrThrow();
    await audit(trx, actor, {
      action: 'api_key.revoke',
      resourceType: 'api_key',
      resourceId: keyId,
      diff: { revokedAt: { from: null, to: row.revoked_at } },
    });
    return toApiKeyInfo(row);
  });
}

function toApiKeyInfo(row: {
  id: string;
  user_id: string;
  name: string;
  scope: ApiKeyScope;
  task_id: string | null;
  created_at: Date;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
}): ApiKeyInfo {
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
