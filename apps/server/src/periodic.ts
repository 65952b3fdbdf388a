import type { Logger } from './logger.ts';

/**
 * Runs `pass` every `intervalMs` (and once at once, with `immediately`), never two passes at a
 * time; a failed pass is logged and the next one runs as usual. Returns a function that stops the
 * timer and waits for a pass in progress.
 */
export function startPeriodic(
  name: string,
  pass: () => Promise<void>,
  options: { intervalMs: number; log: Logger; immediately?: boolean },
): () => Promise<void> {
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
