/** What a user may be. */
export const userRoles = ['member', 'admin'] as const;
export type UserRole = (typeof userRoles)[number];

/**
 * What an API key may do: everything its user may (`full`), read (`read`), push one task's
 * snapshot (`workspace`), or run build jobs (`provisioner`).
 */
export const apiKeyScopes = ['full', 'read', 'workspace', 'provisioner'] as const;
export type ApiKeyScope = (typeof apiKeyScopes)[number];

import { HiatusError } from './errors.ts';

/** Where a request came from, for the audit log. */
export type RequestOrigin = { requestId?: string; ipAddress?: string; userAgent?: string };

/**
 * Who acts: a user (with their role) or the service itself, as the auto-pause loop does; with the
 * request it came in, when there was one.
 */
export type Actor = ({ kind: 'user'; userId: string; role: UserRole } | { kind: 'system' }) & {
  origin?: RequestOrigin;
};
export type UserActor = Actor & { kind: 'user' };

export const systemActor: Actor = { kind: 'system' };

/** The user id a build records as its initiator; null for the system. */
export function initiatorId(actor: Actor): string | null {
  return actor.kind === 'user' ? actor.userId : null;
}

/** Admins and the system see every task; a member only their own. */
export function seesAllTasks(actor: Actor): boolean {
  return actor.kind === 'system' || actor.role === 'admin';
}

/** Refuses a member what only an admin may do (`what`, in words); the system may do it. */
export function assertAdmin(actor: Actor, what: string): void {
  if (actor.kind === 'user' && actor.role !== 'admin') throw new HiatusError('forbidden', `only an admin may ${what}`);
}

/** What a verified key lets its holder do, as authentication needs it again. */
export type VerifiedKey = {
  id: string;
  secretHash: Buffer;
  /** Epoch ms, or null for a key that never expires. */
  expiresAt: number | null;
  scope: ApiKeyScope;
  taskId: string | null;
  userId: string;
  role: UserRole;
};
