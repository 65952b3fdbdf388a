import { describe, expect, it } from 'vitest';
import type { VerifiedKey } from '../domain/actor.ts';
import { KeyUses, VerifiedKeys } from './verified-keys.ts';

const key = (id: string, expiresAt: number | null = null): VerifiedKey => ({
  id,
  secretHash: Buffer.alloc(32, 1),
  expiresAt,
  scope: 'full',
  taskId: null,
  userId: 'u1',
  role: 'member',
});

describe('verified keys', () => {
  it('serves a remembered key until it is revoked', () => {
    const keys = new VerifiedKeys({ ttlMs: 60_000, max: 10, followingAtStart: true });
    keys.remember(key('a'), keys.mark());
    expect(keys.get('a')?.id).toBe('a');
    keys.forget(['a']);
    expect(keys.get('a')).toBeUndefined();
  });

  it('does not keep what a lookup found when a revocation came while it ran', () => {
    const keys = new VerifiedKeys({ ttlMs: 60_000, max: 10, followingAtStart: true });
    const mark = keys.mark();
    keys.forget(['a']); // the revocation's notice arrives while the lookup is on its way
    keys.remember(key('a'), mark);
    expect(keys.get('a')).toBeUndefined();
  });

  it('never serves a key past its expiry', () => {
    const keys = new VerifiedKeys({ ttlMs: 60_000, max: 10, followingAtStart: true });
    const now = Date.now();
    keys.remember(key('a', now + 1_000), keys.mark(), now);
    expect(keys.get('a', now + 999)?.id).toBe('a');
    expect(keys.get('a', now + 1_000)).toBeUndefined();
    keys.remember(key('b', now - 1), keys.mark(), now);
    expect(keys.get('b', now - 2)).toBeUndefined();
  });

  it('serves nothing while notifications are not followed, and starts empty when they are again', () => {
    const keys = new VerifiedKeys({ ttlMs: 60_000, max: 10, followingAtStart: false });
    keys.remember(key('a'), keys.mark());
    expect(keys.get('a')).toBeUndefined();
    keys.restart();
    keys.remember(key('a'), keys.mark());
    expect(keys.get('a')?.id).toBe('a');
    keys.suspend();
    expect(keys.get('a')).toBeUndefined();
    keys.restart();
    expect(keys.get('a')).toBeUndefined();
  });

  it('keeps nothing with a time of 0', () => {
    const keys = new VerifiedKeys({ ttlMs: 0, max: 10, followingAtStart: true });
    keys.remember(key('a'), keys.mark());
    expect(keys.get('a')).toBeUndefined();
  });
});

describe('key uses', () => {
  it('notes a key once per resolution and hands each note over once', () => {
    const uses = new KeyUses(60_000);
    uses.note('a');
    uses.note('a');
    uses.note('b');
    expect(uses.take().sort()).toEqual(['a', 'b']);
    uses.note('a');
    expect(uses.take()).toEqual([]);
  });
});
