import type { App } from '../app.ts';
import {
  type AuditEntry,
  type AuditFilter,
  type AuditRecord,
  deleteAuditLogsBefore,
  insertAuditLog,
  insertAuditLogUnlessRepeated,
  listAuditLogs,
} from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import { defaults } from '../defaults.ts';
import type { Actor } from '../domain/actor.ts';
import type { BuildReason } from '../domain/lifecycle.ts';

/** The audited actions. */
export type AuditAction =
  | 'task.create'
  | 'task.update'
  | 'task.pause'
  | 'task.resume'
  | 'task.delete'
  | 'task.access_denied'
  | 'build.succeeded'
  | 'build.failed'
  | 'snapshot.push'
  | 'user.create'
  | 'api_key.create'
  | 'api_key.revoke'
  | 'template.create'
  | 'template.update'
  | 'template.archive';

export type AuditFacts = {
  action: AuditAction;
  resourceType: 'task' | 'build' | 'user' | 'api_key' | 'template';
  resourceId: string | null;
  buildReason?: BuildReason | null;
  diff?: Record<string, unknown>;
};

/**
 * Records who did what, in the transaction `trx` of the change itself: the change and its record
 * commit or roll back together.
 */
export async function audit(trx: Db, actor: Actor, facts: AuditFacts): Promise<void> {
  await insertAuditLog(trx, entryOf(actor, facts));
}

/**
 * Records a refused attempt, which changes nothing, so it has no transaction of its own: at most
 * once per actor, action and resource within `defaults.refusalAuditWindowMs`, so that a caller
 * repeating it (even with a read-only key) cannot make the log grow request by request.
 */
export async function auditRefusal(db: Db, actor: Actor, facts: AuditFacts): Promise<void> {
  await insertAuditLogUnlessRepeated(db, entryOf(actor, facts), defaults.refusalAuditWindowMs);
}

function entryOf(actor: Actor, facts: AuditFacts): AuditEntry {
  return {
    actorKind: actor.kind,
    actorId: actor.kind === 'user' ? actor.userId : null,
    ...facts,
    requestId: actor.origin?.requestId,
    ipAddress: actor.origin?.ipAddress,
    userAgent: actor.origin?.userAgent,
  };
}

/** A diff entry for a field that changed. */
export const changed = <T>(from: T, to: T) => ({ from, to });

export type AuditPage = { items: AuditRecord[]; nextCursor: string | null };

/** Audit records newest first; `cursor` is the previous page's `nextCursor`. */
export async function listAudit(
  app: App,
  filter: Omit<AuditFilter, 'beforeId'> & { cursor?: string },
): Promise<AuditPage> {
  const { items, more } = await listAuditLogs(app.db, { ...filter, beforeId: filter.cursor });
  return { items, nextCursor: more ? (items.at(-1)?.id ?? null) : null };
}

/**
 * Removes audit records older than `maxAgeDays`, in small batches so retention never holds long
 * locks. Several processes may run it at once: a row deleted by one is skipped by the other.
 */
export function removeOldAuditRecords(app: App, maxAgeDays: number, batchSize: number): Promise<number> {
  return deleteAuditLogsBefore(app.db, new Date(Date.now() - maxAgeDays * 86_400_000), batchSize);
}
