import { describe, expect, it } from 'vitest';
import { HiatusError } from '../domain/errors.ts';
import { ConcurrencyGate, PerKeySlots, PerKeyTurns, requestPlace } from './concurrency.ts';
import { RateLimiter } from './rate.ts';

/** What `fn` threw, for matching. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('nothing was thrown');
}

describe('RateLimiter', () => {
  it('lets a burst through, then refuses with the time until enough tokens are back', () => {
    let now = 0;
    const rate = new RateLimiter({ perSecond: 10, burst: 5 }, () => now);
    for (let i = 0; i < 5; i++) rate.take('k');
    const refused = thrown(() => rate.take('k'));
    expect(refused).toBeInstanceOf(HiatusError);
    expect(refused).toMatchObject({ code: 'rate_limited', retryAfterMs: 100 });
    expect((refused as Error).message).toMatch(/10 calls a second \(bursts of 5\)/);
    now = 100; // one token back
    rate.take('k');
    expect(thrown(() => rate.take('k'))).toMatchObject({ code: 'rate_limited' });
  });

  it('counts every call of a batch, and a refused batch takes nothing', () => {
    let now = 0;
    const rate = new RateLimiter({ perSecond: 10, burst: 5 }, () => now);
    rate.take('k', 3);
    expect(thrown(() => rate.take('k', 3))).toMatchObject({ retryAfterMs: 100 });
    rate.take('k', 2); // the refused batch left its two tokens
    now = 500;
    rate.take('k', 5);
  });

  it('keeps one bucket per key, and never more than the burst', () => {
    let now = 0;
    const rate = new RateLimiter({ perSecond: 1, burst: 2 }, () => now);
    rate.take('a', 2);
    rate.take('b', 2);
    now = 60_000; // a long quiet spell refills to the burst, not beyond
    rate.take('a', 2);
    expect(thrown(() => rate.take('a'))).toMatchObject({ code: 'rate_limited', retryAfterMs: 1000 });
  });

  it('forgets the buckets of keys gone quiet once there are many', () => {
    let now = 0;
    const rate = new RateLimiter({ perSecond: 100, burst: 1 }, () => now);
    for (let i = 0; i < 10_000; i++) rate.take(`key-${i}`);
    now = 1_000;
    rate.take('one more');
    expect(rate.size).toBeLessThan(10);
  });
});

describe('ConcurrencyGate', () => {
  const gate = (options: Partial<ConstructorParameters<typeof ConcurrencyGate>[0]> = {}) =>
    new ConcurrencyGate({ concurrency: 2, queue: 2, perOwner: 2, retryAfterMs: 1_000, what: 'reads', ...options });

  it('runs at most `concurrency` at once; the next in line gets the place given back', async () => {
    const g = gate({ perOwner: 10 });
    const first = await g.acquire('a');
    await g.acquire('b');
    let third = false;
    const waiting = g.acquire('c').then((release) => {
      third = true;
      return release;
    });
    await Promise.resolve();
    expect(g.load).toEqual({ active: 2, waiting: 1 });
    expect(third).toBe(false);
    first();
    first(); // twice is once
    (await waiting)();
    expect(third).toBe(true);
    expect(g.load).toEqual({ active: 1, waiting: 0 });
  });

  it('refuses as busy, with a retry time, when the line is full', async () => {
    const g = gate({ perOwner: 10 });
    await Promise.all([g.acquire('a'), g.acquire('b')]);
    void g.acquire('c');
    void g.acquire('d');
    await expect(g.acquire('e')).rejects.toMatchObject({ code: 'busy', retryAfterMs: 1_000 });
  });

  it('holds one owner to its share of places and line, so others still get in', async () => {
    const g = gate({ concurrency: 1, queue: 10, perOwner: 1 });
    const release = await g.acquire('flooder');
    await expect(g.acquire('flooder')).rejects.toMatchObject({ code: 'rate_limited' });
    const victim = g.acquire('victim');
    release();
    await victim;
  });

  it('drops a waiter whose signal aborts, and gives back what `run` took however the work ends', async () => {
    const g = gate({ concurrency: 1 });
    const held = await g.acquire('a');
    const gone = new AbortController();
    const waiting = g.acquire('b', gone.signal);
    gone.abort(new Error('client left'));
    await expect(waiting).rejects.toThrow('client left');
    expect(g.load.waiting).toBe(0);
    held();
    await expect(g.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await g.run('a', async () => 7)).toBe(7);
    expect(g.load).toEqual({ active: 0, waiting: 0 });
  });
});

describe("ConcurrencyGate's share", () => {
  it('charges the time a charged place was held, and refuses an owner in debt until it is paid back', async () => {
    let now = 0;
    const g = new ConcurrencyGate({
      concurrency: 4,
      queue: 4,
      perOwner: 4,
      retryAfterMs: 1_000,
      what: 'whole reads',
      share: { perSecondMs: 10, burstMs: 100 },
      now: () => now,
    });
    const first = await g.acquire('flooder', undefined, { charged: true });
    now += 300; // a long read
    first();
    const refused = g.acquire('flooder', undefined, { charged: true });
    // 200 ms in debt at 10 ms a second: 20 s.
    await expect(refused).rejects.toMatchObject({ code: 'rate_limited', retryAfterMs: 20_000 });
    await expect(refused).rejects.toThrow(/10 ms of every second \(bursts of 100 ms\)/);
    // Others, and uncharged places, are not held to the flooder's share.
    (await g.acquire('victim', undefined, { charged: true }))();
    (await g.acquire('flooder'))();
    now += 20_001;
    (await g.acquire('flooder', undefined, { charged: true }))();
  });
});

describe('PerKeyTurns', () => {
  it("runs each key's calls a few at a time, in order, without holding up other keys", async () => {
    const turns = new PerKeyTurns(2);
    const a1 = await turns.take('a');
    const a2 = await turns.take('a');
    const order: number[] = [];
    const a3 = turns.take('a').then((release) => {
      order.push(3);
      return release;
    });
    const a4 = turns.take('a').then((release) => {
      order.push(4);
      return release;
    });
    (await turns.take('b'))(); // another key goes straight through
    expect(turns.load('a')).toEqual({ running: 2, waiting: 2 });
    a1();
    a2();
    (await a3)();
    (await a4)();
    expect(order).toEqual([3, 4]);
    expect(turns.load('a')).toEqual({ running: 0, waiting: 0 });
  });

  it('drops a waiting call whose signal aborts', async () => {
    const turns = new PerKeyTurns(1);
    const held = await turns.take('a');
    const gone = new AbortController();
    const waiting = turns.take('a', gone.signal);
    gone.abort(new Error('client left'));
    await expect(waiting).rejects.toThrow('client left');
    held();
    expect(turns.load('a')).toEqual({ running: 0, waiting: 0 });
  });
});

describe('requestPlace', () => {
  it('keeps the place until the request is done, and refuses a second heavy call in it', async () => {
    const g = new ConcurrencyGate({ concurrency: 1, queue: 5, perOwner: 5, retryAfterMs: 1_000, what: 'reads' });
    let done: (() => void)[] = [];
    const hold = requestPlace(g, (then) => done.push(then));
    await hold('a', 'snapshots.get');
    expect(g.load.active).toBe(1);
    await expect(hold('a', 'snapshots.get')).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringContaining('one such call per request'),
    });
    for (const then of done) then();
    expect(g.load.active).toBe(0);

    // A request that ends while it waits leaves the line.
    done = [];
    const blocker = await g.acquire('b');
    const waiting = requestPlace(g, (then) => done.push(then))('a', 'snapshots.get');
    for (const then of done) then();
    await expect(waiting).rejects.toThrow(/ended while it waited/);
    blocker();
    expect(g.load).toEqual({ active: 0, waiting: 0 });
  });
});

describe('PerKeySlots', () => {
  it('lets each key hold up to its cap, and a slot given back can be taken again', () => {
    const slots = new PerKeySlots(2, 'watch streams');
    const one = slots.take('k');
    slots.take('k');
    slots.take('other');
    expect(thrown(() => slots.take('k'))).toMatchObject({
      code: 'rate_limited',
      message: expect.stringContaining('already has 2 open watch streams'),
    });
    one();
    one();
    expect(slots.heldBy('k')).toBe(1);
    slots.take('k');
  });
});
