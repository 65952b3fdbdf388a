import type { App, BuildEvent } from '../app.ts';
import type { ChangeNotice } from '../db/events.ts';

/**
 * Follows committed changes for a watcher: builds of this process, and changes announced by any
 * process (through the database's notifications). Subscribed before the watcher's first read, so
 * a change that lands while it reads is not lost: the next `wait` returns at once.
 */
export class ChangeWaiter {
  private pending = false;
  private wake: (() => void) | undefined;
  private readonly onBuild = (event: BuildEvent) => {
    if (this.matches({ workspaceId: event.build.workspaceId })) this.signal();
  };
  private readonly onChange = (notice: ChangeNotice) => {
    if (notice.revokedKeyIds) return; // about keys only: nothing a watcher follows
    const anything = notice.eventId === undefined && notice.taskId === undefined && notice.workspaceId === undefined;
    if (anything || this.matches(notice)) this.signal();
  };

  constructor(
    private readonly app: Pick<App, 'events'>,
    private readonly matches: (notice: ChangeNotice) => boolean = () => true,
  ) {
    app.events.on('build', this.onBuild);
    app.events.on('change', this.onChange);
  }

  /** Until a matching change (or one seen since the last wait), `ms`, or `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.pending || signal?.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wake = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  close(): void {
    this.app.events.off('build', this.onBuild);
    this.app.events.off('change', this.onChange);
    this.wake?.();
  }

  private signal(): void {
    this.pending = true;
    this.wake?.();
  }
}
