import { HiatusError } from '../domain/errors.ts';

/** Gives a place back; calling it again does nothing. */
export type Release = () => void;

export type GateOptions = {
  /** Places held at once. */
  concurrency: number;
  /** Callers waiting for a place at most; past it a caller is refused as `busy`. */
  queue: number;
  /** Places one owner holds or waits for at most; past it the owner is refused as `rate_limited`. */
  perOwner: number;
  /** What a refused caller is told to wait before trying again. */
  retryAfterMs: number;
  /** The work, in the messages: "whole-history reads". */
  what: string;
  /**
   * Each owner's share of time in places taken with `charged`: a bucket of `burstMs` that refills
   * `perSecondMs` each second and is charged, on release, the time the place was held. An owner in
   * debt is refused as `rate_limited` until it is paid back. Absent: no share.
   */
  share?: { perSecondMs: number; burstMs: number };
  /** The clock, in ms (for tests). */
  now?: () => number;
};

type Waiter = { owner: string; grant: () => void };
type Share = { balanceMs: number; at: number };

/** Owners' shares past this many are swept of the full ones. */
const sweepSharesAbove = 10_000;

/** What a caller of a gate uses: a place to wait for, or work run in one. */
export interface Gate {
  acquire(owner: string, signal?: AbortSignal, options?: { charged?: boolean }): Promise<Release>;
  run<T>(owner: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  readonly load: { active: number; waiting: number };
}

/**
 * A process-wide bound on work that holds much memory while it runs: at most `concurrency` at
 * once, then up to `queue` callers wait in line (first come, first served), and no owner holds or
 * waits for more than `perOwner` places, so one caller cannot fill the line. Past a bound a caller
 * is refused at once, with a time to retry after, rather than left waiting.
 *
 * Bounding how many run bounds memory, not time: one whole read of a large history parses and
 * serializes on the event loop for a while, so a caller reading such things back to back would
 * stall everyone's requests. Places taken `charged` therefore also draw on the owner's `share`.
 *
 * @example
 * const history = await gate.run(actor.userId, () => agent.messages());
 */
export class ConcurrencyGate implements Gate {
  private active = 0;
  private readonly waiting: Waiter[] = [];
  private readonly byOwner = new Map<string, number>();
  private readonly shares = new Map<string, Share>();
  private readonly now: () => number;

  constructor(readonly options: GateOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Waits for a place (until `signal` aborts); the place is held until the returned release is
   * called. `charged`: the time it is held is taken from the owner's share.
   */
  async acquire(owner: string, signal?: AbortSignal, { charged = false } = {}): Promise<Release> {
    signal?.throwIfAborted();
    const { concurrency, queue, perOwner, retryAfterMs, what } = this.options;
    if (charged) this.assertShareLeft(owner);
    if ((this.byOwner.get(owner) ?? 0) >= perOwner) {
      throw new HiatusError(
        'rate_limited',
        `you already have ${perOwner} ${what} running or waiting, the most one caller may; retry when one is done`,
        { retryAfterMs },
      );
    }
    if (this.active < concurrency) {
      this.active++;
      return this.holdFor(owner, charged);
    }
    if (this.waiting.length >= queue) {
      throw new HiatusError(
        'busy',
        `the server is at its bound of ${what} (${concurrency} running, ${queue} waiting)`,
        {
          retryAfterMs,
        },
      );
    }
    this.count(owner, 1);
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        this.count(owner, -1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        owner,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.count(owner, -1);
          resolve(this.holdFor(owner, charged));
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Runs `work` in a place, giving it back however the work ends. */
  async run<T>(owner: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(owner, signal);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** Places held and callers waiting now. */
  get load(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.waiting.length };
  }

  private holdFor(owner: string, charged: boolean): Release {
    this.count(owner, 1);
    const since = this.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count(owner, -1);
      if (charged) this.charge(owner, this.now() - since);
      const next = this.waiting.shift();
      // The place passes straight to the next in line; only an empty line frees it.
      if (next) next.grant();
      else this.active--;
    };
  }

  private balanceOf(owner: string, now: number): number {
    const { perSecondMs, burstMs } = this.options.share!;
    const share = this.shares.get(owner);
    return share ? Math.min(burstMs, share.balanceMs + ((now - share.at) * perSecondMs) / 1000) : burstMs;
  }

  private assertShareLeft(owner: string): void {
    if (!this.options.share) return;
    const balance = this.balanceOf(owner, this.now());
    if (balance > 0) return;
    const { perSecondMs, burstMs } = this.options.share;
    const retryAfterMs = Math.max(1_000, Math.ceil((-balance / perSecondMs) * 1000));
    throw new HiatusError(
      'rate_limited',
      `you have used your share of ${this.options.what}: ${perSecondMs} ms of every second (bursts of ` +
        `${burstMs} ms) in this server process; retry in ${Math.ceil(retryAfterMs / 1000)} s`,
      { retryAfterMs },
    );
  }

  private charge(owner: string, ms: number): void {
    if (!this.options.share) return;
    const now = this.now();
    this.shares.set(owner, { balanceMs: this.balanceOf(owner, now) - ms, at: now });
    if (this.shares.size > sweepSharesAbove) {
      for (const [key] of this.shares) {
        if (this.balanceOf(key, now) >= this.options.share.burstMs) this.shares.delete(key);
      }
    }
  }

  private count(owner: string, delta: number): void {
    const n = (this.byOwner.get(owner) ?? 0) + delta;
    if (n > 0) this.byOwner.set(owner, n);
    else this.byOwner.delete(owner);
  }
}

/**
 * One request's place in `gate`, for work whose result stays in memory after the work itself:
 * a batch's results are sent together, and a slow reader keeps a written body buffered. The
 * request's first such call waits for a place and keeps it until `whenDone` calls back (the
 * response written or the connection gone: a wait in line ends then too); a second one in the
 * same request is refused, since its result would sit in memory beside the first without a place.
 * The time the place is held is charged to the owner's share (see ConcurrencyGate).
 *
 * @example
 * const hold = requestPlace(gate, (then) => response.once('close', then));
 * await hold(actor.userId, 'snapshots.get');
 */
export function requestPlace(
  gate: Gate,
  whenDone: (then: () => void) => void,
): (owner: string, what: string) => Promise<void> {
  let taken = false;
  return async (owner, what) => {
    if (taken) {
      throw new HiatusError(
        'bad_input',
        `${what} reads something whole: one such call per request; send the others in requests of their own`,
      );
    }
    taken = true;
    const gone = new AbortController();
    let release: Release | undefined;
    whenDone(() => {
      gone.abort(new Error('the request ended while it waited for a place'));
      release?.();
    });
    release = await gate.acquire(owner, gone.signal, { charged: true });
    if (gone.signal.aborted) release();
  };
}

/**
 * How many of something each key holds open at once (watch streams, say), at most `perKey`.
 *
 * @example
 * const release = streams.open(keyId); // throws rate_limited past the cap
 * response.once('close', release);
 */
export class PerKeySlots {
  private readonly open = new Map<string, number>();

  constructor(
    readonly perKey: number,
    private readonly what: string,
  ) {}

  /** Takes a slot for `key`, or throws `rate_limited` when it holds `perKey` already. */
  take(key: string): Release {
    const held = this.open.get(key) ?? 0;
    if (held >= this.perKey) {
      throw new HiatusError(
        'rate_limited',
        `this key already has ${held} open ${this.what}, the most one key may hold; close one before opening another`,
      );
    }
    this.open.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.open.get(key) ?? 1) - 1;
      if (n > 0) this.open.set(key, n);
      else this.open.delete(key);
    };
  }

  /** Slots `key` holds now. */
  heldBy(key: string): number {
    return this.open.get(key) ?? 0;
  }
}

/**
 * How many calls each key has running at once, at most `perKey`; its further calls wait their
 * turn, in order (they are not refused: the rate limit bounds how many can come). A batch of a
 * hundred calls then runs a few at a time instead of taking every database connection at once,
 * and other keys' calls go in between.
 *
 * @example
 * const release = await turns.take(keyId, signal);
 * try { return await call(); } finally { release(); }
 */
export class PerKeyTurns {
  private readonly keys = new Map<string, { running: number; waiting: Array<() => void> }>();

  constructor(readonly perKey: number) {}

  /** Waits for `key`'s turn (until `signal` aborts); the turn is held until the release is called. */
  async take(key: string, signal?: AbortSignal): Promise<Release> {
    signal?.throwIfAborted();
    let state = this.keys.get(key);
    if (!state) {
      state = { running: 0, waiting: [] };
      this.keys.set(key, state);
    }
    const line = state;
    if (line.running < this.perKey) {
      line.running++;
      return this.turnOf(key, line);
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const at = line.waiting.indexOf(grant);
        if (at >= 0) line.waiting.splice(at, 1);
        reject(signal?.reason);
      };
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.turnOf(key, line));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      line.waiting.push(grant);
    });
  }

  /** Calls `key` has running and waiting now. */
  load(key: string): { running: number; waiting: number } {
    const line = this.keys.get(key);
    return { running: line?.running ?? 0, waiting: line?.waiting.length ?? 0 };
  }

  private turnOf(key: string, line: { running: number; waiting: Array<() => void> }): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = line.waiting.shift();
      // The turn passes straight to the next in line; a key with nothing left is forgotten.
      if (next) next();
      else if (--line.running === 0) this.keys.delete(key);
    };
  }
}

/** Runs `run` over `items`, at most `limit` at a time (a pass over many agents or tasks). */
export async function forEachLimited<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
