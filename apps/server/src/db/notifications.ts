import pg from 'pg';
import { type ChangeNotice, changesChannel } from './events.ts';

export type ChangeListener = { stop(): Promise<void> };

/**
 * LISTENs for changes other processes commit (db/events.ts NOTIFYs them), on a connection of its
 * own: a pooled connection cannot hold a LISTEN. A lost connection is made again; after a reconnect
 * `onListening()`, then `onNotice({})` tells waiters to look, since notices sent meanwhile are gone.
 */
export function listenForChanges(
  url: string,
  onNotice: (notice: ChangeNotice) => void,
  onError: (error: Error) => void,
  onListening: () => void = () => undefined,
): ChangeListener {
  let client: pg.Client | undefined;
  let stopped = false;
  let retryMs = 250;
  let timer: NodeJS.Timeout | undefined;

  const connect = async () => {
    if (stopped) return;
    const next = new pg.Client({ connectionString: url });
    client = next;
    const retry = (error: Error) => {
      if (stopped || client !== next) return;
      client = undefined;
      onError(error);
      next.end().catch(() => undefined);
      timer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    };
    next.on('error', retry);
    next.on('end', () => retry(new Error('the notification connection closed')));
    next.on('notification', (message) => {
      if (message.channel !== changesChannel) return;
      onNotice(parseNotice(message.payload));
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${changesChannel}`);
      retryMs = 250;
      onListening();
      onNotice({});
    } catch (error) {
      retry(error as Error);
    }
  };
  void connect();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await client?.end().catch(() => undefined);
    },
  };
}

function parseNotice(payload: string | undefined): ChangeNotice {
  try {
    const parsed = JSON.parse(payload ?? '{}') as ChangeNotice;
    return {
      ...(typeof parsed.eventId === 'string' ? { eventId: parsed.eventId } : {}),
      ...(typeof parsed.taskId === 'string' ? { taskId: parsed.taskId } : {}),
      ...(typeof parsed.workspaceId === 'string' ? { workspaceId: parsed.workspaceId } : {}),
      ...(Array.isArray(parsed.revokedKeyIds)
        ? { revokedKeyIds: parsed.revokedKeyIds.filter((id): id is string => typeof id === 'string') }
        : {}),
    };
  } catch {
    return {};
  }
}
