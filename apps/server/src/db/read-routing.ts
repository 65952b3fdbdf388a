import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import type { Db } from '../db/connection.ts';
import { currentWalPosition, replayedUpTo } from '../db/replica.ts';
import type { Logger } from '../logger.ts';

export type ReadRoutingOptions = {
  /** How long a read waits for the replica to replay its caller's last write before going to the primary. */
  waitMs: number;
  /** Callers whose last write is remembered, and for how long. */
  maxKeys: number;
  positionTtlMs: number;
  /** Between two polls of the replica's replay position while waiting. */
  pollMs: number;
  /** At most one line about a failing replica per this many ms. */
  complaintIntervalMs: number;
  log?: Logger;
};

/**
 * Which database a request's lag-tolerant reads use: the replica (DATABASE_READ_URL) when it has
 * replayed the caller's own last write, else the primary, so a caller always reads its own writes.
 * The choice is made once per request (`run`) and held in an AsyncLocalStorage; services ask for
 * it with `reads()`, and anything outside a `run` (writes, reads deciding a write, loops) gets
 * the primary. Positions are remembered in this process only: a caller whose next request lands on
 * another process may read a replica that lags behind its write, by up to the replication lag.
 */
export class ReadRouting {
  private readonly positions: LRUCache<string, string>;
  private readonly current = new AsyncLocalStorage<Db>();
  private lastComplaintAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly primary: Db,
    private readonly replica: Db | null,
    private readonly options: ReadRoutingOptions,
  ) {
    this.positions = new LRUCache({ max: options.maxKeys, ttl: options.positionTtlMs });
  }

  /** The database for the current request's lag-tolerant reads. */
  reads(): Db {
    return this.current.getStore() ?? this.primary;
  }

  /** After `keyId`'s write committed: its next replica reads wait for the replica to pass this point. */
  async noteWrite(keyId: string): Promise<void> {
    if (!this.replica) return;
    try {
      this.positions.set(keyId, await currentWalPosition(this.primary));
    } catch (error) {
      // Without a position the caller's reads must not go to the replica for a while.
      this.positions.set(keyId, 'unknown');
      this.complain(error, 'could not read the primary WAL position');
    }
  }

  /** Runs `call` with its lag-tolerant reads on the replica when `keyId` may read there, else on the primary. */
  async run<T>(keyId: string, call: () => Promise<T>): Promise<T> {
    return this.current.run(await this.choose(keyId), call);
  }

  private async choose(keyId: string): Promise<Db> {
    const replica = this.replica;
    if (!replica) return this.primary;
    const position = this.positions.get(keyId);
    if (position === 'unknown') return this.primary;
    const deadline = performance.now() + this.options.waitMs;
    try {
      // No write of the caller's remembered: one round trip still tells a replica that is down.
      while (!(await replayedUpTo(replica, position ?? '0/0'))) {
        const left = deadline - performance.now();
        if (left <= 0) return this.primary;
        await sleep(Math.min(this.options.pollMs, left));
      }
      // Caught up: later reads of this caller need not wait again.
      if (position && this.positions.peek(keyId) === position) this.positions.delete(keyId);
      return replica;
    } catch (error) {
      this.complain(error, 'the read replica failed: reading from the primary');
      return this.primary;
    }
  }

  private complain(error: unknown, message: string): void {
    const now = performance.now();
    if (now - this.lastComplaintAt < this.options.complaintIntervalMs) return;
    this.lastComplaintAt = now;
    this.options.log?.warn({ err: error }, message);
  }
}
