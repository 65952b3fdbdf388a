import { z } from 'zod';

/**
 * Schedules: when a task may run, as windows of local wall-clock time in an IANA time zone, e.g.
 * `{ timeZone: 'Europe/Berlin', windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '19:00' }] }`.
 *
 * A window is active on each of its days from the first instant that day at which the zone's clock
 * reads `start` or later, until the first instant it reads `end` or later (`24:00`: the next day's
 * start). So on a DST change day a 08:00–19:00 window is still 08:00–19:00 local time; a boundary
 * the clock skips (02:30 when 02:00 jumps to 03:00) falls when the clock jumps (03:00), and one it
 * shows twice (02:30 when 03:00 falls back to 02:00) falls at its first showing. Windows that
 * overlap or touch are one stretch of activity. Pure: plain `Intl`, no clock of its own.
 */

export const weekdays = Object.freeze(['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const);
export type Weekday = (typeof weekdays)[number];

export type ScheduleWindow = { days: Weekday[]; start: string; end: string };
export type Schedule = { timeZone: string; windows: ScheduleWindow[] };

/** Where a task's activity changes: a window opens (`start`) or closes (`end`). */
export type ScheduleBoundary = { at: Date; kind: 'start' | 'end' };

/** Whether `timeZone` is a zone `Intl` knows (an IANA name such as `Europe/Berlin`, or `UTC`). */
function isKnownTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

const clockTime = /^(?:[01]\d|2[0-3]):[0-5]\d$/;

/** A schedule as callers give it: a known zone, 1–20 windows, each with days and a start before its end. */
export const scheduleSchema = z.strictObject({
  timeZone: z
    .string()
    .min(1)
    .max(64)
    .refine(isKnownTimeZone, { error: 'an IANA time zone such as "Europe/Berlin" or "UTC"' }),
  windows: z
    .array(
      z
        .strictObject({
          days: z
            .array(z.enum(weekdays))
            .min(1)
            .max(7)
            .refine((days) => new Set(days).size === days.length, { error: 'each day once' }),
          start: z.string().regex(clockTime, 'a time of day "HH:MM", 00:00 to 23:59'),
          end: z.string().regex(/^(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$/, 'a time of day "HH:MM", 00:01 to 24:00'),
        })
        .refine((w) => !clockTime.test(w.start) || minutesOf(w.start) < minutesOf(w.end), {
          error: 'end must come after start on the same day: split a window that runs past midnight in two',
          path: ['end'],
        }),
    )
    .min(1)
    .max(20),
});

function minutesOf(time: string): number {
  const [hours, minutes] = time.split(':').map(Number) as [number, number];
  return hours * 60 + minutes;
}

/** Where a schedule stands at an instant: inside a window or not, since when, and until when. */
export type ScheduleState = {
  within: boolean;
  /** The boundary that began the present stretch; null when activity never changes. */
  since: ScheduleBoundary | null;
  /** The first boundary after the instant; null when activity never changes. */
  next: ScheduleBoundary | null;
};

/** Where `schedule` stands at `instant` (one computation for the three answers below). */
export function scheduleAt(schedule: Schedule, instant: Date): ScheduleState {
  const t = instant.getTime();
  const stretches = activeStretches(schedule, t);
  let since: ScheduleBoundary | null = null;
  let next: ScheduleBoundary | null = null;
  for (const [start, end] of stretches) {
    for (const boundary of [
      { at: start, kind: 'start' as const },
      { at: end, kind: 'end' as const },
    ]) {
      if (!Number.isFinite(boundary.at)) continue;
      if (boundary.at <= t && (!since || boundary.at > since.at.getTime()))
        since = { ...boundary, at: new Date(boundary.at) };
      if (boundary.at > t && (!next || boundary.at < next.at.getTime()))
        next = { ...boundary, at: new Date(boundary.at) };
    }
  }
  return { within: stretches.some(([start, end]) => start <= t && t < end), since, next };
}

/** Whether the schedule lets a task run at `instant`. */
export function isWithinSchedule(schedule: Schedule, instant: Date): boolean {
  return scheduleAt(schedule, instant).within;
}

/** The first boundary strictly after `after`; null when activity never changes (always on). */
export function nextBoundary(schedule: Schedule, after: Date): ScheduleBoundary | null {
  return scheduleAt(schedule, after).next;
}

/** The latest boundary at or before `atOrBefore`: when the stretch it is in began; null as for nextBoundary. */
export function previousBoundary(schedule: Schedule, atOrBefore: Date): ScheduleBoundary | null {
  return scheduleAt(schedule, atOrBefore).since;
}

const dayMs = 86_400_000;

/**
 * The schedule's active stretches (merged windows) as [start, end) instants in ms, over the local
 * days from 8 before to 8 after `around`'s: every weekday comes at least once on either side, so
 * the boundaries next to `around` are among them. The outermost stretches may be cut short by the
 * range; their cut ends are not boundaries, and stand as ±Infinity.
 */
function activeStretches(schedule: Schedule, around: number): Array<[number, number]> {
  const zone = zoneClock(schedule.timeZone);
  const today = localDay(zone, around);
  const windows: Array<[number, number]> = [];
  for (let offset = -8; offset <= 8; offset++) {
    const day = today + offset * dayMs;
    const weekday = weekdays[new Date(day).getUTCDay()]!;
    for (const window of schedule.windows) {
      if (!window.days.includes(weekday)) continue;
      const start = firstInstantAtOrAfter(zone, day + minutesOf(window.start) * 60_000);
      const end = firstInstantAtOrAfter(zone, day + minutesOf(window.end) * 60_000);
      if (start < end) windows.push([start, end]);
    }
  }
  windows.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [start, end] of windows) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  const first = today - 8 * dayMs;
  const last = today + 9 * dayMs;
  // A stretch touching the range's edge may go on beyond it: its edge there is not a boundary.
  return merged.map(([start, end]) => [
    start <= firstInstantAtOrAfter(zone, first) ? Number.NEGATIVE_INFINITY : start,
    end >= firstInstantAtOrAfter(zone, last) ? Number.POSITIVE_INFINITY : end,
  ]);
}

/** A zone's clock: the wall-clock time (as ms of a UTC date with the same fields) at an instant. */
type ZoneClock = (instant: number) => number;

const clocks = new Map<string, ZoneClock>();

function zoneClock(timeZone: string): ZoneClock {
  let clock = clocks.get(timeZone);
  if (!clock) {
    const format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    clock = (instant) => {
      const parts: Record<string, number> = {};
      for (const part of format.formatToParts(instant)) parts[part.type] = Number(part.value);
      const wall = Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
      return wall + (((instant % 1000) + 1000) % 1000);
    };
    clocks.set(timeZone, clock);
  }
  return clock;
}

/** The local date at `instant`, as the ms of that date's UTC midnight. */
function localDay(zone: ZoneClock, instant: number): number {
  const wall = zone(instant);
  return wall - (((wall % dayMs) + dayMs) % dayMs);
}

/**
 * The first instant at which the zone's clock reads `wall` (a wall-clock time as UTC ms) or later:
 * the instant itself when the clock shows it once, its first showing when it shows it twice, and
 * the moment the clock jumps past it when it skips it.
 */
function firstInstantAtOrAfter(zone: ZoneClock, wall: number): number {
  // Every zone's offset is within ±14 h; the offsets in force just around `wall` give the candidates.
  const offsets = [
    zone(wall - 14 * 3_600_000) - (wall - 14 * 3_600_000),
    zone(wall + 14 * 3_600_000) - (wall + 14 * 3_600_000),
  ];
  const shown = offsets.map((offset) => wall - offset).filter((instant) => zone(instant) === wall);
  if (shown.length > 0) return Math.min(...shown);
  // Skipped: search the jump between the two candidates, to the ms.
  let low = Math.min(...offsets.map((offset) => wall - offset));
  let high = Math.max(...offsets.map((offset) => wall - offset));
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (zone(middle) >= wall) high = middle;
    else low = middle;
  }
  return high;
}
