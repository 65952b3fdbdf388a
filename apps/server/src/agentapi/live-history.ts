import { LRUCache } from 'lru-cache';
import type { AgentHistory } from '../agentapi/client.ts';

export type LiveHistoryOptions = {
  /** How long a fetched history serves log pages; 0 fetches for every page. */
  ttlMs: number;
  /** Bytes of history kept at most, least recently read dropped first. */
  maxBytes: number;
};

/**
 * The agents' histories as last fetched, kept a few seconds for the live log: the pages of one
 * read-through come from one fetch (and agree with each other), and callers asking for the same
 * task at the same time share one fetch in flight. Bounded in bytes (lru-cache's `maxSize`); a
 * history larger than the whole cache is served to the callers waiting for it and not kept.
 */
export class LiveHistories {
  private readonly cache: LRUCache<string, AgentHistory, () => Promise<AgentHistory>> | null;

  constructor(options: LiveHistoryOptions) {
    this.cache =
      options.ttlMs > 0
        ? new LRUCache({
            ttl: options.ttlMs,
            maxSize: options.maxBytes,
            sizeCalculation: (history) => Math.max(history.bytes, 1),
            fetchMethod: (_key, _stale, { context }) => context(),
          })
        : null;
  }

  /** The history of `taskId`'s agent at `agentUrl`, fetched with `load` unless fetched within the ttl. */
  async get(taskId: string, agentUrl: string | null, load: () => Promise<AgentHistory>): Promise<AgentHistory> {
    if (!this.cache) return load();
    const history = await this.cache.fetch(keyOf(taskId, agentUrl), { context: load });
    // fetch() answers undefined only when the fetch was aborted, which this cache never does.
    return history ?? load();
  }

  /** Drops what is kept of a task's history: after Hiatus itself changed it (a message sent), say. */
  forget(taskId: string, agentUrl: string | null): void {
    this.cache?.delete(keyOf(taskId, agentUrl));
  }
}

/** A resumed task's agent may listen elsewhere: its history is a different one. */
function keyOf(taskId: string, agentUrl: string | null): string {
  return `${taskId} ${agentUrl ?? ''}`;
}
