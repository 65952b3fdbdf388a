import type { Logger } from './logger.ts';

/** Stops a loop: no new pass starts, and the one in progress is waited for. */
export type StopLoop = () => Promise<void>;

/** A background loop of the server: its name (for logs) and how to start it. */
export type Loop = { name: string; start(log: Logger): StopLoop };

/**
 * Runs `pass` every `intervalMs` (and once at once, with `immediately`), never two passes at a
 * time; a failed pass is logged and the next one runs as usual.
 */
export function startPeriodic(
  name: string,
  pass: () => Promise<void>,
  options: { intervalMs: number; log: Logger; immediately?: boolean },
): StopLoop {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = pass()
      .catch((error: unknown) => options.log.warn({ err: error }, `${name} pass failed`))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  if (options.immediately) tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/** A loop that runs `pass` every `intervalMs`. */
export function periodic(
  name: string,
  intervalMs: number,
  pass: (log: Logger) => Promise<void>,
  options: { immediately?: boolean } = {},
): Loop {
  return { name, start: (log) => startPeriodic(name, () => pass(log), { intervalMs, log, ...options }) };
}

/** Starts every loop of the list; the one function returned stops them all (graphile-worker's releasers). */
export function startLoops(loops: Loop[], log: Logger): StopLoop {
  const stops = loops.map((loop) => loop.start(log));
  log.info({ loops: loops.map((l) => l.name) }, 'background loops started');
  return async () => {
    await Promise.all(stops.map((stop) => stop()));
  };
}
