import { LRUCache } from 'lru-cache';
import type { VerifiedKey } from '../domain/actor.ts';

/**
 * Keys this process verified recently, so that an authenticated request costs one query (its own)
 * rather than two. Only valid keys are kept, each for at most `ttlMs` and never past its expiry. A
 * revocation evicts the key at once: in this process directly, in others through the database's
 * notifications. While notifications are not followed (a PostgreSQL process whose listener is down
 * or not yet connected), nothing is served from here, since a revocation could go unseen.
 */
export class VerifiedKeys {
  private readonly keys: LRUCache<string, VerifiedKey> | null;
  private following: boolean;
  /** Bumped by every eviction: a lookup that began before one does not store what it found. */
  private epoch = 0;

  constructor(options: { ttlMs: number; max: number; followingAtStart: boolean }) {
    this.keys = options.ttlMs > 0 ? new LRUCache({ max: options.max, ttl: options.ttlMs }) : null;
    this.following = options.followingAtStart;
  }

  /** The key, if it was verified recently and has not expired since. */
  get(id: string, now = Date.now()): VerifiedKey | undefined {
    if (!this.following) return undefined;
    const key = this.keys?.get(id);
    if (key?.expiresAt != null && key.expiresAt <= now) {
      this.keys?.delete(id);
      return undefined;
    }
    return key;
  }

  /** A mark to give `remember`: taken before the lookup whose result it stores. */
  mark(): number {
    return this.epoch;
  }

  /** Keeps a key just verified, unless something was evicted since `mark` (it may have been this key). */
  remember(key: VerifiedKey, mark: number, now = Date.now()): void {
    if (!this.keys || !this.following || mark !== this.epoch) return;
    const untilExpiry = key.expiresAt == null ? undefined : key.expiresAt - now;
    if (untilExpiry !== undefined && untilExpiry <= 0) return;
    this.keys.set(key.id, key, untilExpiry !== undefined && untilExpiry < this.keys.ttl ? { ttl: untilExpiry } : {});
  }

  /** These keys were revoked. */
  forget(ids: readonly string[]): void {
    this.epoch++;
    for (const id of ids) this.keys?.delete(id);
  }

  /** Notifications may have been missed: start again from nothing, and serve from here again. */
  restart(): void {
    this.epoch++;
    this.keys?.clear();
    this.following = true;
  }

  /** Notifications are not followed for now: serve nothing from here until `restart`. */
  suspend(): void {
    this.epoch++;
    this.following = false;
    this.keys?.clear();
  }
}

/**
 * The last uses of keys, written in the background in one statement per flush instead of beside
 * each request; a key is noted at most once per `resolutionMs` in this process.
 */
export class KeyUses {
  private readonly noted: LRUCache<string, true>;
  private pending = new Set<string>();

  constructor(readonly resolutionMs: number) {
    this.noted = new LRUCache({ max: 100_000, ttl: resolutionMs });
  }

  note(id: string): void {
    if (this.noted.has(id)) return;
    this.noted.set(id, true);
    this.pending.add(id);
  }

  /** The keys noted since the last call. */
  take(): string[] {
    const ids = [...this.pending];
    this.pending = new Set();
    return ids;
  }
}
