import { deleteAuditLogsBefore } from '../db/audit.ts';
import type { Db } from '../db/connection.ts';
import type { Logger } from '../logger.ts';

export type AuditRetentionOptions = { maxAgeDays: number; intervalMs: number; batchSize: number; log: Logger };

/**
 * Removes audit records older than `maxAgeDays`, in batches, every `intervalMs`. Several processes
 * may run it at once: batches are small and a row deleted by one is skipped by the other.
 */
export function startAuditRetention(db: Db, options: AuditRetentionOptions): () => Promise<void> {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    const before = new Date(Date.now() - options.maxAgeDays * 86_400_000);
    running = deleteAuditLogsBefore(db, before, options.batchSize)
      .then((removed) => {
        if (removed) options.log.info({ removed, before }, 'audit retention removed old records');
      })
      .catch((error: unknown) => options.log.warn({ err: error }, 'audit retention pass failed'))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
