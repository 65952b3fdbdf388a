import type { App } from '../app.ts';
import { audit } from '../audit/audit.ts';
import { type ApiKeyInfo, findApiKey, insertApiKey, listApiKeys, revokeApiKeyRow } from '../db/api-keys.ts';
import { findUser, insertUser, listUsers, type User, usernameConstraint } from '../db/users.ts';
import { defaults } from '../defaults.ts';
import { type Actor, type ApiKeyScope, assertAdmin, type UserRole } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import { getTask } from '../lifecycle/tasks.ts';
import { adminTokenKeyName } from './bootstrap.ts';
import { generateApiKey, keyDigest } from './keys.ts';
import type { Principal } from './principals.ts';

export type { ApiKeyInfo, User };

/** A page of a list, and the cursor of the next one (null on the last). */
export type Page<T> = { items: T[]; nextCursor: string | null };

const pageOf = <T extends { id: string }>({ items, more }: { items: T[]; more: boolean }): Page<T> => ({
  items,
  nextCursor: more ? (items.at(-1)?.id ?? null) : null,
});

/** Every user, by name, page by page (admins only); `cursor` is the previous page's `nextCursor`. */
export async function listUsersFor(
  app: Pick<App, 'db'>,
  actor: Actor,
  page: { limit?: number; cursor?: string } = {},
): Promise<Page<User>> {
  assertAdmin(actor, 'list users');
  return pageOf(await listUsers(app.db, { limit: page.limit ?? defaults.listPageSize, afterId: page.cursor }));
}

/**
 * The actor's own keys (an admin may name another user), newest first, revoked and expired ones
 * included: their ids, names, scopes, dates and last use, never a secret or its hash.
 */
export async function listApiKeysFor(
  app: Pick<App, 'db'>,
  actor: Actor,
  page: { userId?: string; limit?: number; cursor?: string } = {},
): Promise<Page<ApiKeyInfo>> {
  if (actor.kind !== 'user') throw new HiatusError('forbidden', 'keys belong to users');
  const userId = page.userId ?? actor.userId;
  if (userId !== actor.userId) assertAdmin(actor, "list another user's keys");
  return pageOf(
    await listApiKeys(app.db, userId, { limit: page.limit ?? defaults.listPageSize, afterId: page.cursor }),
  );
}

/** Who a key speaks for, as the key's holder may know it. */
export type Identity = {
  userId: string;
  username: string;
  role: UserRole;
  keyId: string;
  keyName: string;
  scope: ApiKeyScope;
  /** For a workspace key: its task. */
  taskId: string | null;
  expiresAt: Date | null;
};

/** Who the presented key speaks for: its user and the key itself. */
export async function describePrincipal(app: Pick<App, 'db'>, principal: Principal): Promise<Identity> {
  const [user, key] = await Promise.all([
    findUser(app.db, principal.actor.userId),
    findApiKey(app.db, principal.keyId),
  ]);
  // Both were just read to let the request in; gone now means removed in between.
  if (!user || !key) throw new HiatusError('not_found', 'the key or its user no longer exists');
  return {
    userId: user.id,
    username: user.username,
    role: user.role,
    keyId: key.id,
    keyName: key.name,
    scope: key.scope,
    taskId: key.taskId,
    expiresAt: key.expiresAt,
  };
}

/** Creates a user (admins only), audited. */
export async function createUser(
  app: Pick<App, 'db'>,
  actor: Actor,
  input: { username: string; role: UserRole },
): Promise<User> {
  assertAdmin(actor, 'create users');
  try {
    return await app.db.transaction().execute(async (trx) => {
      const user = await insertUser(trx, input);
      await audit(trx, actor, {
        action: 'user.create',
        resourceType: 'user',
        resourceId: user.id,
        diff: { username: input.username, role: input.role },
      });
      return user;
    });
  } catch (error) {
    if ((error as { constraint?: string }).constraint === usernameConstraint) {
      throw new HiatusError('conflict', `the username "${input.username}" is taken`);
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
  app: Pick<App, 'db'>,
  actor: Actor,
  input: NewApiKey,
): Promise<{ key: string; apiKey: ApiKeyInfo }> {
  if (actor.kind !== 'user') throw new HiatusError('forbidden', 'keys belong to users');
  const userId = input.userId ?? actor.userId;
  const scope = input.scope ?? 'full';
  if (userId !== actor.userId) assertAdmin(actor, "create another user's keys");
  if (scope === 'provisioner') assertAdmin(actor, 'create provisioner keys');
  if ((scope === 'workspace') !== (input.taskId !== undefined)) {
    throw new HiatusError('bad_input', 'a workspace key names its task (taskId), and only a workspace key does');
  }
  if (input.name === adminTokenKeyName) {
    throw new HiatusError(
      'bad_input',
      `the key name "${adminTokenKeyName}" is reserved for the key the server makes of it`,
    );
  }
  if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
    throw new HiatusError('bad_input', 'expiresAt must be in the future');
  }
  if (!(await findUser(app.db, userId))) throw new HiatusError('not_found', `user ${userId} not found`);
  if (input.taskId) {
    const task = await getTask(app, { kind: 'user', userId, role: 'member' }, input.taskId).catch(() => null);
    if (!task) throw new HiatusError('not_found', `task ${input.taskId} not found`);
  }
  const key = generateApiKey();
  const { id, hash } = keyDigest(key);
  const apiKey = await app.db.transaction().execute(async (trx) => {
    const created = await insertApiKey(trx, {
      id,
      userId,
      secretHash: hash,
      name: input.name,
      scope,
      taskId: input.taskId,
      expiresAt: input.expiresAt,
    });
    await audit(trx, actor, {
      action: 'api_key.create',
      resourceType: 'api_key',
      resourceId: created.id,
      diff: { userId, name: created.name, scope, taskId: created.taskId, expiresAt: created.expiresAt },
    });
    return created;
  });
  return { key, apiKey };
}

/** Revokes a key: its owner or an admin may. Revoking twice is a conflict. */
export async function revokeApiKey(app: Pick<App, 'db' | 'events'>, actor: Actor, keyId: string): Promise<ApiKeyInfo> {
  if (actor.kind !== 'user') throw new HiatusError('forbidden', 'keys belong to users');
  const revoked = await app.db.transaction().execute(async (trx) => {
    const key = await findApiKey(trx, keyId, { forUpdate: true });
    // Another member's key does not exist for them, as their tasks do not.
    if (!key || (key.userId !== actor.userId && actor.role !== 'admin')) {
      throw new HiatusError('not_found', `key ${keyId} not found`);
    }
    if (key.revokedAt) throw new HiatusError('conflict', `key ${keyId} is already revoked`);
    const revoked = await revokeApiKeyRow(trx, keyId);
    await audit(trx, actor, {
      action: 'api_key.revoke',
      resourceType: 'api_key',
      resourceId: keyId,
      diff: { revokedAt: { from: null, to: revoked.revokedAt } },
    });
    return revoked;
  });
  // Other processes hear of it through the notification the revocation sent; this one now.
  app.events.emit('change', { revokedKeyIds: [revoked.id] });
  return revoked;
}
