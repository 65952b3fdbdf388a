import { type AuditEntry, insertAuditLog } from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import type { BuildReason } from '../db/schema.ts';
import type { Actor } from './actor.ts';

/** The lifecycle's audited actions. */
export type AuditAction =
  | 'task.create'
  | 'task.pause'
  | 'task.resume'
  | 'task.delete'
  | 'task.access_denied'
  | 'build.succeeded'
  | 'build.failed'
  | 'snapshot.push'
  | 'user.create'
  | 'api_key.create'
  | 'api_key.revoke';

export type AuditFacts = {
  action: AuditAction;
  resourceType: 'task' | 'build' | 'user' | 'api_key';
  resourceId: string | null;
  buildReason?: BuildReason | null;
  diff?: Record<string, unknown>;
};

/**
 * Records who did what, in the transaction `trx` of the change itself: the change and its record
 * commit or roll back together.
 */
export async function audit(trx: Db, actor: Actor, facts: AuditFacts): Promise<void> {
  const entry: AuditEntry = {
    actorKind: actor.kind,
    actorId: actor.kind === 'user' ? actor.userId : null,
    ...facts,
    requestId: actor.origin?.requestId,
    ipAddress: actor.origin?.ipAddress,
    userAgent: actor.origin?.userAgent,
  };
  await insertAuditLog(trx, entry);
}

/** A diff entry for a field that changed. */
export const changed = <T>(from: T, to: T) => ({ from, to });
