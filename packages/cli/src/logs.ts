import type { HiatusClient, LogEntry, LogPage, LogSegment, PendingMessage, TaskStatus } from '@hiatus/client';
import { formatTime, say, sayJson } from './output.ts';

export type LogOptions = { cursor?: number; pageSize: number; json: boolean };

/** Where a page came from, which a reader must see before its entries. */
type Origin = Pick<LogPage, 'source' | 'snapshotAt' | 'notice'>;

/**
 * The marker line before entries from one origin: `-- live from the agent --`, or
 * `-- from the snapshot taken at … --` (a paused task's log is what its agent had said by then).
 */
function originMarker(origin: Origin): string {
  if (origin.source === 'live') return '-- live from the agent --';
  const why = origin.notice ? ` (${origin.notice})` : '';
  if (!origin.snapshotAt) return `-- no snapshot${why} --`;
  return `-- from the snapshot taken at ${formatTime(origin.snapshotAt)}${why} --`;
}

/**
 * The line between two segments of a task's history (two agent lifetimes):
 * `-- paused at …; resumed at … with a new agent (segment 2) --`.
 */
function boundaryLine(before: LogSegment | undefined, after: LogSegment | undefined, segment: number): string {
  const paused = before?.pausedAt ? `paused at ${formatTime(before.pausedAt)}` : 'paused';
  const resumed = after?.startedAt ? `resumed at ${formatTime(after.startedAt)}` : 'resumed';
  return `-- ${paused}; ${resumed} with a new agent (segment ${segment}) --`;
}

/**
 * Segments seen so far, and the last entry's: says where a boundary line goes as entries come.
 */
class Segments {
  private readonly known = new Map<number, LogSegment>();
  private last: number | undefined;

  note(page: LogPage): void {
    for (const segment of page.segments) this.known.set(segment.segment, segment);
  }

  /** The boundary line to print before `entry`, if it starts a new segment after one already shown. */
  before(entry: LogEntry): string | null {
    const previous = this.last;
    this.last = entry.segment;
    if (previous === undefined || previous === entry.segment) return null;
    return boundaryLine(this.known.get(previous), this.known.get(entry.segment), entry.segment);
  }

  list(): LogSegment[] {
    return [...this.known.values()].sort((a, b) => a.segment - b.segment);
  }
}

/** An entry as one line (continuation lines indented): `[time] input: text`. */
function formatEntry(entry: LogEntry): string {
  return `[${formatTime(entry.time)}] ${entry.role}: ${entry.content.replace(/\n/g, '\n    ')}`;
}

/** The pages of a task's log after position `cursor`, to the last one. */
async function* pagesAfter(
  client: HiatusClient,
  id: string,
  cursor: number | undefined,
  limit: number,
): AsyncGenerator<LogPage> {
  let next = cursor;
  do {
    const page = await client.tasks.logs.query({ id, cursor: next, limit });
    yield page;
    next = page.nextCursor ?? undefined;
  } while (next !== undefined);
}

/**
 * Prints a task's whole log (after position `cursor`): a marker line saying where it comes from,
 * the entries of every segment with a line at each boundary between two agents, then the messages
 * still waiting in the task's inbox; with `json`, one object
 * `{ source, snapshotAt, notice, entries, segments, pending, pendingCount }`.
 */
export async function printLogs(client: HiatusClient, id: string, options: LogOptions): Promise<void> {
  let origin: Origin | undefined;
  let pending: PendingMessage[] = [];
  let pendingCount = 0;
  const entries: LogEntry[] = [];
  const segments = new Segments();
  for await (const page of pagesAfter(client, id, options.cursor, options.pageSize)) {
    if (!origin) {
      origin = { source: page.source, snapshotAt: page.snapshotAt, notice: page.notice };
      if (!options.json) say(originMarker(origin));
    }
    pending = page.pending;
    pendingCount = page.pendingCount;
    segments.note(page);
    if (options.json) entries.push(...page.entries);
    else
      for (const entry of page.entries) {
        const boundary = segments.before(entry);
        if (boundary) say(boundary);
        say(formatEntry(entry));
      }
  }
  if (options.json) return sayJson({ ...origin, entries, segments: segments.list(), pending, pendingCount });
  if (pendingCount > 0) say(`-- waiting in the inbox, not yet seen by the agent: ${pendingCount} --`);
  for (const message of pending) {
    const rest = message.truncated ? ` … (${message.bytes} bytes in all)` : '';
    say(`[${formatTime(message.queuedAt)}] queued ${message.messageId}: ${message.content}${rest}`);
  }
  if (pendingCount > pending.length) say(`-- and ${pendingCount - pending.length} more --`);
}

/**
 * Follows a task's log until it is deleted or the user stops it (Ctrl-C): the live log, read again
 * every `intervalMs` while the task is active and at every change `tasks.watch` reports; when the
 * task pauses the log comes from its snapshot, and a marker line says so; a resumed task's new
 * agent goes on after a boundary line. With `json`, JSON lines:
 * `{ type: 'origin', source, snapshotAt, notice }`,
 * `{ type: 'entry', id, position, segment, role, content, time }`, `{ type: 'status', status }`.
 */
export async function followLogs(
  client: HiatusClient,
  id: string,
  options: LogOptions & { intervalMs: number },
): Promise<void> {
  let shown: Origin | undefined;
  let last = options.cursor;
  const segments = new Segments();
  const show = (page: LogPage): void => {
    segments.note(page);
    const changed =
      !shown || shown.source !== page.source || shown.snapshotAt?.getTime() !== page.snapshotAt?.getTime();
    if (changed) {
      shown = { source: page.source, snapshotAt: page.snapshotAt, notice: page.notice };
      if (options.json) sayJson({ type: 'origin', ...shown }, { line: true });
      else say(originMarker(shown));
    }
    for (const entry of page.entries) {
      if (last !== undefined && entry.position <= last) continue;
      last = entry.position;
      if (options.json) sayJson({ type: 'entry', ...entry }, { line: true });
      else {
        const boundary = segments.before(entry);
        if (boundary) say(boundary);
        say(formatEntry(entry));
      }
    }
  };
  // Positions run on across agents: a resumed task's new agent comes after what was shown.
  const readNew = async (): Promise<void> => {
    for await (const page of pagesAfter(client, id, last, options.pageSize)) show(page);
  };
  // The first read answers NOT_FOUND, UNAUTHORIZED or an unreachable server at once, as a plain read does.
  await readNew();

  await new Promise<void>((resolve, reject) => {
    let status: TaskStatus | undefined;
    let reading: Promise<void> | null = null;
    let again = false;
    // One read at a time; a change seen during a read makes one more read after it.
    const refresh = (): void => {
      if (reading) {
        again = true;
        return;
      }
      reading = (async () => {
        do {
          again = false;
          await readNew();
        } while (again);
      })()
        .catch(finish)
        .finally(() => {
          reading = null;
        });
    };
    const timer = setInterval(() => {
      if (status === 'active' || shown?.source === 'live') refresh();
    }, options.intervalMs);
    const subscription = client.tasks.watch.subscribe(
      { id },
      {
        onData: (task) => {
          if (task.status !== status) {
            status = task.status;
            if (options.json) sayJson({ type: 'status', status }, { line: true });
          }
          if (task.status === 'deleted') {
            if (!options.json) say('-- the task was deleted --');
            finish();
          } else refresh();
        },
        onError: finish,
      },
    );
    const stop = (): void => finish();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    function finish(error?: unknown): void {
      clearInterval(timer);
      subscription.unsubscribe();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (error === undefined) resolve();
      else reject(error);
    }
  });
}
