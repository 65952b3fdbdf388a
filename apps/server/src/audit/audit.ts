import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '../app.ts';
import {
  type AuditEntry,
  type AuditFilter,
  type AuditRecord,
  auditLogPartitions,
  deleteAuditLogsBefore,
  insertAuditLog,
  insertAuditLogUnlessRepeated,
  listAuditLogs,
} from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import {
  createMonthPartition,
  dropPartition,
  isLockTimeout,
  listPartitions,
  monthStart,
  partitionName,
} from '../db/partitions.ts';
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
  | 'task.keep_alive'
  | 'task.cancel_message'
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
  app: Pick<App, 'reads'>,
  filter: Omit<AuditFilter, 'beforeId'> & { cursor?: string },
): Promise<AuditPage> {
  const { items, more } = await listAuditLogs(app.reads(), { ...filter, beforeId: filter.cursor });
  return { items, nextCursor: more ? (items.at(-1)?.id ?? null) : null };
}

/**
 * Creates this month's and next month's audit partitions (UTC) when they are missing, so records
 * land in their month's partition rather than the default one, and retention can drop them whole.
 * Returns the partitions it created.
 */
export async function prepareAuditPartitions(app: Pick<App, 'db'>, now: Date = new Date()): Promise<string[]> {
  const created: string[] = [];
  for (const month of [monthStart(now), monthStart(now, 1)]) {
    const made = await withLockRetries(() =>
      createMonthPartition(app.db, auditLogPartitions, month, defaults.partitionLockTimeoutMs),
    );
    if (made) created.push(partitionName(auditLogPartitions, month));
  }
  return created;
}

/** What a retention run removed: whole partitions, and records deleted one batch at a time. */
export type AuditRetentionResult = { droppedPartitions: string[]; deleted: number };

/**
 * Removes audit records older than `maxAgeDays`. A month entirely older than the cut-off goes
 * whole (its partition detached and dropped, each lock waited for briefly); in the month that
 * straddles the cut-off, and in the default partition, old records are deleted in small batches.
 * No lock is held for long, so audited changes go on meanwhile. Several processes may run it at
 * once: a partition is dropped once, and a row deleted by one is skipped by the other.
 */
export async function removeOldAuditRecords(
  app: Pick<App, 'db'>,
  maxAgeDays: number,
  batchSize: number,
  now: Date = new Date(),
): Promise<AuditRetentionResult> {
  const before = new Date(now.getTime() - maxAgeDays * 86_400_000);
  const droppedPartitions: string[] = [];
  for (const partition of await listPartitions(app.db, auditLogPartitions)) {
    if (partition.to === null || partition.to > before) continue;
    const dropped = await withLockRetries(() =>
      dropPartition(app.db, auditLogPartitions, partition.name, defaults.partitionLockTimeoutMs),
    );
    if (dropped) droppedPartitions.push(partition.name);
  }
  const deleted = await deleteAuditLogsBefore(app.db, before, batchSize);
  return { droppedPartitions, deleted };
}

/** Runs `attempt` again, a little later each time, while it gives up waiting for a lock. */
async function withLockRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isLockTimeout(error) || tries >= defaults.partitionLockAttempts) throw error;
      await sleep(tries * defaults.partitionLockTimeoutMs);
    }
  }
}
