import { deleteAuditLogsBefore } from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import type { Logger } from '../logger.ts';
import { startPeriodic } from '../periodic.ts';

export type AuditRetentionOptions = { maxAgeDays: number; intervalMs: number; batchSize: number; log: Logger };

/**
 * Removes audit records older than `maxAgeDays`, in batches, every `intervalMs`. Several processes
 * may run it at once: batches are small and a row deleted by one is skipped by the other.
 */
export function startAuditRetention(db: Db, options: AuditRetentionOptions): () => Promise<void> {
  return startPeriodic(
    'audit retention',
    async () => {
      const before = new Date(Date.now() - options.maxAgeDays * 86_400_000);
      const removed = await deleteAuditLogsBefore(db, before, options.batchSize);
      if (removed) options.log.info({ removed, before }, 'audit retention removed old records');
    },
    { ...options, immediately: true },
  );
}
