import { HiatusError } from '../domain/errors.ts';

export type RateLimitOptions = {
  /** Tokens a bucket gains each second: the sustained rate. */
  perSecond: number;
  /** Tokens a bucket holds at most: how many calls may come at once after a quiet spell. */
  burst: number;
};

type Bucket = { tokens: number; at: number };

/** Buckets past this many are swept of the full ones (keys that have been quiet for a while). */
const sweepAbove = 10_000;

/**
 * Token buckets, one per key, in this process: a bucket holds up to `burst` tokens, gains
 * `perSecond` a second, and every call takes one. With R server processes a key may make R times
 * as many calls; counting in the database would cost a write per request, the very load this guards.
 *
 * A few lines of our own rather than rate-limiter-flexible: its in-memory limiter counts fixed
 * windows (a burst at a window's edge passes twice), answers every call through a promise, and
 * brings stores we do not use. A bucket answers synchronously, so a refused request costs a map
 * lookup and no database work.
 *
 * @example
 * const rate = new RateLimiter({ perSecond: 50, burst: 200 });
 * rate.take(keyId, batch.length); // throws rate_limited (with retryAfterMs) when the key is over
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly options: RateLimitOptions,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(options.perSecond > 0 && options.burst >= 1))
      throw new Error('a rate limit needs perSecond > 0 and burst >= 1');
  }

  /**
   * Takes `cost` tokens from `key`'s bucket, or none when it holds fewer: then throws `rate_limited`
   * saying when it will hold enough. A cost above the burst can never pass (configuration keeps
   * the largest batch within the burst).
   */
  take(key: string, cost = 1): void {
    const now = this.now();
    const { perSecond, burst } = this.options;
    const tokens = this.tokensAt(this.buckets.get(key), now);
    if (tokens >= cost) {
      this.buckets.set(key, { tokens: tokens - cost, at: now });
      if (this.buckets.size > sweepAbove) this.sweep(now);
      return;
    }
    this.buckets.set(key, { tokens, at: now });
    const retryAfterMs = Math.ceil(((Math.min(cost, burst) - tokens) / perSecond) * 1000);
    throw new HiatusError(
      'rate_limited',
      `this key is over its rate limit of ${perSecond} calls a second (bursts of ${burst}): ` +
        `this request needs ${cost}, it has ${Math.floor(tokens)}; retry in ${Math.ceil(retryAfterMs / 1000)} s`,
      { retryAfterMs },
    );
  }

  /** How many keys have a bucket (for tests). */
  get size(): number {
    return this.buckets.size;
  }

  private tokensAt(bucket: Bucket | undefined, now: number): number {
    if (!bucket) return this.options.burst;
    return Math.min(this.options.burst, bucket.tokens + ((now - bucket.at) * this.options.perSecond) / 1000);
  }

  /** A full bucket is the same as no bucket: dropping it keeps the map to the keys in use. */
  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (this.tokensAt(bucket, now) >= this.options.burst) this.buckets.delete(key);
    }
  }
}
