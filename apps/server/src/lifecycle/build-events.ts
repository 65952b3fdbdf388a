import type { App, BuildEvent } from '../app.ts';

/**
 * Resolves on this process's next build event that `matches`, after `ms` at the latest, or when
 * `signal` aborts: how a waiter is woken at once by changes made here and still sees, by looking
 * again, those of other processes.
 */
export function nextBuildEvent(
  app: Pick<App, 'events'>,
  matches: (event: BuildEvent) => boolean,
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      app.events.off('build', onBuild);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const onBuild = (event: BuildEvent) => {
      if (matches(event)) done();
    };
    const timer = setTimeout(done, ms);
    app.events.on('build', onBuild);
    signal?.addEventListener('abort', done, { once: true });
  });
}
