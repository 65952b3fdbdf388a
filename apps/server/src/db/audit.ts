import { sql } from 'kysely';
import type { Db } from './connection.ts';
import type { MonthlyPartitionedTable } from './partitions.ts';
import type { AuditActorKind, BuildReason } from './schema.ts';

export type AuditEntry = {
  actorKind: AuditActorKind;
  actorId: string | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  buildReason?: BuildReason | null;
  requestId?: string | null;
  ipAddress?: string | null;
  userAgent?: string | null;
  diff?: Record<string, unknown>;
};

/** Writes one audit record; pass the change's own transaction, so neither exists without the other. */
export async function insertAuditLog(trx: Db, entry: AuditEntry): Promise<void> {
  await trx
    .insertInto('audit_logs')
    .values({
      actor_kind: entry.actorKind,
      actor_id: entry.actorId,
      action: entry.action,
      resource_type: entry.resourceType,
      resource_id: entry.resourceId,
      build_reason: entry.buildReason ?? null,
      request_id: entry.requestId ?? null,
      ip_address: entry.ipAddress ?? null,
      user_agent: entry.userAgent?.slice(0, 512) ?? null,
      diff: JSON.stringify(entry.diff ?? {}),
    })
    .execute();
}

/**
 * Writes `entry` unless the same actor's same action on the same resource was recorded within
 * `withinMs`. One statement: a burst of repeats writes one record (two at most, when the first two
 * race). Returns whether it wrote one.
 */
export async function insertAuditLogUnlessRepeated(db: Db, entry: AuditEntry, withinMs: number): Promise<boolean> {
  const result = await sql`
    INSERT INTO audit_logs
      (actor_kind, actor_id, action, resource_type, resource_id, build_reason, request_id, ip_address, user_agent, diff)
    SELECT ${entry.actorKind}::audit_actor_kind, ${entry.actorId}::uuid, ${entry.action}, ${entry.resourceType},
           ${entry.resourceId}::uuid, ${entry.buildReason ?? null}::build_reason, ${entry.requestId ?? null},
           ${entry.ipAddress ?? null}::inet, ${entry.userAgent?.slice(0, 512) ?? null}, ${JSON.stringify(entry.diff ?? {})}::jsonb
    WHERE NOT EXISTS (
      SELECT 1 FROM audit_logs
      WHERE resource_id = ${entry.resourceId}::uuid
        AND action = ${entry.action}
        AND actor_id IS NOT DISTINCT FROM ${entry.actorId}::uuid
        AND occurred_at > NOW() - make_interval(secs => ${withinMs / 1000})
    )`.execute(db);
  return (result.numAffectedRows ?? 0n) > 0n;
}

export type AuditRecord = {
  id: string;
  occurredAt: Date;
  actorKind: AuditActorKind;
  actorId: string | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  buildReason: BuildReason | null;
  requestId: string | null;
  ipAddress: string | null;
  userAgent: string | null;
  diff: unknown;
};

export type AuditFilter = {
  actorId?: string;
  action?: string;
  resourceId?: string;
  buildReason?: BuildReason;
  since?: Date;
  until?: Date;
  limit: number;
  /** Records older than this id (the previous page's last). */
  beforeId?: string;
};

/** Audit records newest first; each filter has an index that leads with it and then the id. */
export async function listAuditLogs(db: Db, filter: AuditFilter): Promise<{ items: AuditRecord[]; more: boolean }> {
  const rows = await auditLogQuery(db, filter).execute();
  const items = rows.slice(0, filter.limit).map((row) => ({
    id: String(row.id),
    occurredAt: row.occurred_at,
    actorKind: row.actor_kind,
    actorId: row.actor_id,
    action: row.action,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    buildReason: row.build_reason,
    requestId: row.request_id,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    diff: row.diff,
  }));
  return { items, more: rows.length > filter.limit };
}

/** The query behind listAuditLogs (one row more than the limit, to know if there is more), for EXPLAIN too. */
export function auditLogQuery(db: Db, filter: AuditFilter) {
  let query = db.selectFrom('audit_logs').selectAll();
  if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
  if (filter.action) query = query.where('action', '=', filter.action);
  if (filter.resourceId) query = query.where('resource_id', '=', filter.resourceId);
  if (filter.buildReason) query = query.where('build_reason', '=', filter.buildReason);
  if (filter.since) query = query.where('occurred_at', '>=', filter.since);
  if (filter.until) query = query.where('occurred_at', '<', filter.until);
  if (filter.beforeId) query = query.where('id', '<', filter.beforeId);
  return query.orderBy('id', 'desc').limit(filter.limit + 1);
}

/** audit_logs is partitioned by month of occurred_at (migration 0012); retention drops whole months. */
export const auditLogPartitions: MonthlyPartitionedTable = Object.freeze({ table: 'audit_logs', key: 'occurred_at' });

/**
 * Deletes records older than `before`, `batchSize` at a time, each batch its own short statement
 * so retention never holds long locks. Returns how many went. Whole months are dropped first
 * (dropPartition), so this reads only the month that straddles `before` and the default partition.
 */
export async function deleteAuditLogsBefore(db: Db, before: Date, batchSize: number): Promise<number> {
  let total = 0;
  for (;;) {
    // The primary key is (id, occurred_at): both name a row, and occurred_at prunes the partitions.
    const result = await sql`
      DELETE FROM audit_logs WHERE occurred_at < ${before} AND (id, occurred_at) IN (
        SELECT id, occurred_at FROM audit_logs WHERE occurred_at < ${before} ORDER BY occurred_at LIMIT ${batchSize}
      )`.execute(db);
    const deleted = Number(result.numAffectedRows ?? 0n);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
