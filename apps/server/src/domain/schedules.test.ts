import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  isWithinSchedule,
  nextBoundary,
  previousBoundary,
  type Schedule,
  scheduleAt,
  scheduleSchema,
  type Weekday,
  weekdays,
} from './schedules.ts';

const workdays: Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri'];
const berlinOffice: Schedule = {
  timeZone: 'Europe/Berlin',
  windows: [{ days: workdays, start: '08:00', end: '19:00' }],
};
const everyDay = (start: string, end: string, timeZone = 'Europe/Berlin'): Schedule => ({
  timeZone,
  windows: [{ days: [...weekdays], start, end }],
});
const at = (iso: string) => new Date(iso);

describe('isWithinSchedule', () => {
  it('follows the local wall clock of the zone, on the window days only', () => {
    // Wednesday 2026-11-25, Berlin is UTC+1.
    expect(isWithinSchedule(berlinOffice, at('2026-11-25T06:59:59Z'))).toBe(false);
    expect(isWithinSchedule(berlinOffice, at('2026-11-25T07:00:00Z'))).toBe(true);
    expect(isWithinSchedule(berlinOffice, at('2026-11-25T17:59:59.999Z'))).toBe(true);
    expect(isWithinSchedule(berlinOffice, at('2026-11-25T18:00:00Z'))).toBe(false);
    // Saturday.
    expect(isWithinSchedule(berlinOffice, at('2026-11-28T10:00:00Z'))).toBe(false);
    // The same instant is inside in Berlin and outside in New York (02:00 there).
    const newYork = { ...berlinOffice, timeZone: 'America/New_York' };
    expect(isWithinSchedule(newYork, at('2026-11-25T07:00:00Z'))).toBe(false);
    expect(isWithinSchedule(newYork, at('2026-11-25T13:00:00Z'))).toBe(true);
  });

  it('keeps 08:00–19:00 local on the spring DST change day (2026-03-29, 02:00 jumps to 03:00)', () => {
    const schedule = everyDay('08:00', '19:00');
    // Saturday before: UTC+1. Sunday of the change: UTC+2.
    expect(isWithinSchedule(schedule, at('2026-03-28T06:59:00Z'))).toBe(false);
    expect(isWithinSchedule(schedule, at('2026-03-28T07:00:00Z'))).toBe(true);
    expect(isWithinSchedule(schedule, at('2026-03-29T05:59:00Z'))).toBe(false);
    expect(isWithinSchedule(schedule, at('2026-03-29T06:00:00Z'))).toBe(true);
    expect(isWithinSchedule(schedule, at('2026-03-29T16:59:00Z'))).toBe(true);
    expect(isWithinSchedule(schedule, at('2026-03-29T17:00:00Z'))).toBe(false);
    expect(previousBoundary(schedule, at('2026-03-29T12:00:00Z'))).toEqual({
      at: at('2026-03-29T06:00:00Z'),
      kind: 'start',
    });
    expect(nextBoundary(schedule, at('2026-03-29T12:00:00Z'))).toEqual({ at: at('2026-03-29T17:00:00Z'), kind: 'end' });
  });

  it('keeps 08:00–19:00 local on the autumn DST change day (2026-10-25, 03:00 falls back to 02:00)', () => {
    const schedule = everyDay('08:00', '19:00');
    expect(nextBoundary(schedule, at('2026-10-24T12:00:00Z'))).toEqual({ at: at('2026-10-24T17:00:00Z'), kind: 'end' });
    expect(nextBoundary(schedule, at('2026-10-24T17:00:00Z'))).toEqual({
      at: at('2026-10-25T07:00:00Z'),
      kind: 'start',
    });
    expect(nextBoundary(schedule, at('2026-10-25T07:00:00Z'))).toEqual({ at: at('2026-10-25T18:00:00Z'), kind: 'end' });
    expect(isWithinSchedule(schedule, at('2026-10-25T06:59:59Z'))).toBe(false);
    expect(isWithinSchedule(schedule, at('2026-10-25T17:59:59Z'))).toBe(true);
    expect(isWithinSchedule(schedule, at('2026-10-25T18:00:00Z'))).toBe(false);
  });

  it('starts a window whose start the clock skips when the clock jumps past it', () => {
    // 02:30 does not exist on 2026-03-29 in Berlin: the clock goes from 01:59:59 (UTC+1) to 03:00 (UTC+2) at 01:00Z.
    const schedule = everyDay('02:30', '05:00');
    expect(isWithinSchedule(schedule, at('2026-03-29T00:59:59Z'))).toBe(false);
    expect(isWithinSchedule(schedule, at('2026-03-29T01:00:00Z'))).toBe(true);
    expect(previousBoundary(schedule, at('2026-03-29T02:00:00Z'))).toEqual({
      at: at('2026-03-29T01:00:00Z'),
      kind: 'start',
    });
    expect(nextBoundary(schedule, at('2026-03-29T02:00:00Z'))).toEqual({ at: at('2026-03-29T03:00:00Z'), kind: 'end' });
    // A window that ends in the skipped hour ends at the jump.
    const early = everyDay('01:00', '02:30');
    expect(nextBoundary(early, at('2026-03-29T00:30:00Z'))).toEqual({ at: at('2026-03-29T01:00:00Z'), kind: 'end' });
  });

  it('takes a boundary the clock shows twice at its first showing, and does not open again in the repeated hour', () => {
    // 2026-10-25 in Berlin: 02:00–03:00 comes twice, first at UTC+2 (00:00Z–01:00Z), then at UTC+1 (01:00Z–02:00Z).
    const schedule = everyDay('00:00', '02:30');
    expect(nextBoundary(schedule, at('2026-10-25T00:00:00Z'))).toEqual({ at: at('2026-10-25T00:30:00Z'), kind: 'end' });
    expect(isWithinSchedule(schedule, at('2026-10-25T00:29:59Z'))).toBe(true);
    expect(isWithinSchedule(schedule, at('2026-10-25T00:30:00Z'))).toBe(false);
    // 02:10 the second time (01:10Z): the window does not open again.
    expect(isWithinSchedule(schedule, at('2026-10-25T01:10:00Z'))).toBe(false);
    const late = everyDay('02:30', '04:00');
    expect(previousBoundary(late, at('2026-10-25T01:10:00Z'))).toEqual({
      at: at('2026-10-25T00:30:00Z'),
      kind: 'start',
    });
    // 04:00 CET is 03:00Z: the window lasted two and a half hours that night.
    expect(nextBoundary(late, at('2026-10-25T01:10:00Z'))).toEqual({ at: at('2026-10-25T03:00:00Z'), kind: 'end' });
  });

  it('merges windows that overlap or touch, and finds the next boundary across a weekend', () => {
    const split: Schedule = {
      timeZone: 'UTC',
      windows: [
        { days: ['fri'], start: '22:00', end: '24:00' },
        { days: ['sat'], start: '00:00', end: '06:00' },
        { days: ['sat'], start: '05:00', end: '07:00' },
      ],
    };
    // Friday 2026-11-27 23:00Z to Saturday 07:00Z is one stretch.
    expect(previousBoundary(split, at('2026-11-28T01:00:00Z'))).toEqual({
      at: at('2026-11-27T22:00:00Z'),
      kind: 'start',
    });
    expect(nextBoundary(split, at('2026-11-28T01:00:00Z'))).toEqual({ at: at('2026-11-28T07:00:00Z'), kind: 'end' });
    // From Friday evening in Berlin the next start is Monday 08:00.
    expect(nextBoundary(berlinOffice, at('2026-11-27T18:00:00Z'))).toEqual({
      at: at('2026-11-30T07:00:00Z'),
      kind: 'start',
    });
  });

  it('has no boundary when a task may always run', () => {
    const always = everyDay('00:00', '24:00', 'Asia/Kolkata');
    expect(scheduleAt(always, at('2026-05-01T12:00:00Z'))).toEqual({ within: true, since: null, next: null });
  });
});

describe('scheduleSchema', () => {
  it('accepts a sane schedule', () => {
    expect(scheduleSchema.parse(berlinOffice)).toEqual(berlinOffice);
    expect(scheduleSchema.safeParse(everyDay('00:00', '24:00', 'UTC')).success).toBe(true);
  });

  it.each([
    ['an unknown zone', { timeZone: 'Mars/Olympus_Mons', windows: berlinOffice.windows }, 'IANA time zone'],
    ['no window', { timeZone: 'UTC', windows: [] }, 'windows'],
    ['an end before the start', everyDay('19:00', '08:00'), 'split a window'],
    ['an empty window', everyDay('08:00', '08:00'), 'split a window'],
    ['a bad time', everyDay('8:00', '19:00'), 'HH:MM'],
    ['24:00 as a start', everyDay('24:00', '24:00'), 'HH:MM'],
    [
      'a day twice',
      { timeZone: 'UTC', windows: [{ days: ['mon', 'mon'], start: '08:00', end: '09:00' }] },
      'each day once',
    ],
    ['an unknown day', { timeZone: 'UTC', windows: [{ days: ['monday'], start: '08:00', end: '09:00' }] }, 'days'],
    ['an unknown field', { ...berlinOffice, cron: '* * * * *' }, 'cron'],
  ])('refuses %s', (_, input, words) => {
    const parsed = scheduleSchema.safeParse(input);
    expect(parsed.success).toBe(false);
    expect(JSON.stringify(parsed.error?.issues)).toContain(words);
  });
});

describe('schedule arithmetic, as properties', () => {
  const zones = ['Europe/Berlin', 'America/New_York', 'Australia/Sydney', 'Asia/Kolkata', 'UTC'];
  const clock = fc.integer({ min: 0, max: 24 * 4 }).map((quarter) => {
    const minutes = quarter * 15;
    return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
  });
  const window = fc
    .record({ days: fc.subarray([...weekdays], { minLength: 1 }), a: clock, b: clock })
    .filter(({ a, b }) => a !== b)
    .map(({ days, a, b }) => {
      const [start, end] = [a, b].sort() as [string, string];
      return { days, start, end };
    });
  const schedule = fc.record({
    timeZone: fc.constantFrom(...zones),
    windows: fc.array(window, { minLength: 1, maxLength: 4 }),
  });
  // Any instant of 2026 (both DST changes of each zone are in it), to the second.
  const instant = fc
    .integer({ min: Date.UTC(2026, 0, 1) / 1000, max: Date.UTC(2027, 0, 1) / 1000 })
    .map((s) => new Date(s * 1000));

  /** The answer by reading the local clock, for instants nowhere near a change of the zone's offset. */
  function byLocalClock(s: Schedule, t: Date): boolean | undefined {
    const offset = (ms: number) => localParts(s.timeZone, new Date(ms)).wall - ms;
    if (offset(t.getTime() - 6 * 3_600_000) !== offset(t.getTime() + 6 * 3_600_000)) return undefined;
    const { weekday, minutes } = localParts(s.timeZone, t);
    return s.windows.some(
      (w) => w.days.includes(weekday) && toMinutes(w.start) <= minutes && minutes < toMinutes(w.end),
    );
  }

  it('agrees with the local wall clock away from offset changes', () => {
    fc.assert(
      fc.property(schedule, instant, (s, t) => {
        const expected = byLocalClock(s, t);
        if (expected !== undefined) expect(isWithinSchedule(s, t)).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('is constant between a boundary and the next, and boundaries alternate', () => {
    fc.assert(
      fc.property(schedule, instant, (s, t) => {
        const { within, since, next } = scheduleAt(s, t);
        if (!since || !next) return;
        expect(since.kind).not.toBe(next.kind);
        expect(within).toBe(since.kind === 'start');
        expect(isWithinSchedule(s, since.at)).toBe(within);
        expect(isWithinSchedule(s, new Date(next.at.getTime() - 1))).toBe(within);
        expect(isWithinSchedule(s, next.at)).toBe(!within);
        expect(previousBoundary(s, next.at)).toEqual(next);
        expect(nextBoundary(s, new Date(since.at.getTime() - 1))).toEqual(since);
      }),
      { numRuns: 200 },
    );
  });
});

function toMinutes(time: string): number {
  const [h, m] = time.split(':').map(Number) as [number, number];
  return h * 60 + m;
}

function localParts(timeZone: string, t: Date): { weekday: Weekday; minutes: number; wall: number } {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      weekday: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
      .formatToParts(t)
      .map((p) => [p.type, p.value]),
  );
  const n = (type: string) => Number(parts[type]);
  const wall = Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second'));
  return { weekday: String(parts.weekday).toLowerCase() as Weekday, minutes: n('hour') * 60 + n('minute'), wall };
}
