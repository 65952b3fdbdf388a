import { createHiatusClient, hiatusErrorCode, type RouterOutputs } from '@hiatus/client';
import { defaults } from './defaults.ts';
import type { ConversationMessage } from './driver.ts';
import type { JobOutcome } from './perform.ts';

/** A job as `provisioner.acquire` hands it out: the build, its task and template version, the last start's outputs. */
export type BuildJob = NonNullable<RouterOutputs['provisioner']['acquire']>;

/**
 * Which jobs a provisioner takes: by the template's driver (`external` without one), by template
 * name, and by its tags: a job whose template names tags goes only to a provisioner having them all.
 */
export type JobFilter = { drivers?: string[]; templates?: string[]; tags?: Record<string, string> };

export type { JobOutcome } from './perform.ts';

/**
 * The provisioner's side of the server's protocol. The server knows a provisioner by its key: the
 * jobs a key acquires are that key's to heartbeat and complete. `provisionerId` is the name it shows.
 */
export type ProvisionerApi = {
  /** The next pending job this provisioner may take, waiting up to `waitMs` for one; null if none came. */
  acquire(filter: JobFilter & { waitMs: number }): Promise<BuildJob | null>;
  /**
   * Keeps a running job alive; a `lost` failure means it is no longer this provisioner's. `attempt`
   * (the job's, as acquired) names the claim: one handed out again since is lost, even to this key.
   */
  heartbeat(buildId: string, attempt?: number): Promise<void>;
  complete(buildId: string, outcome: JobOutcome, attempt?: number): Promise<void>;
  /** A resume job's previous conversation, oldest first; fetched only for a resume (it can be many megabytes). */
  previousConversation(buildId: string): Promise<ConversationMessage[]>;
  /** Which of these tasks should have a running workspace now. */
  shouldRun(taskIds: string[]): Promise<string[]>;
};

export type ProvisionerApiOptions = {
  /** The server's base URL, such as `http://hiatus.internal:8080`; `/trpc` is added. */
  url: string;
  /** A provisioner key (or an admin's full key), sent as `Authorization: Bearer <token>`: its identity. */
  token: string;
  /** The name its jobs show (in builds, the audit log and stale-job errors). */
  provisionerId: string;
};

/**
 * The protocol over the server's tRPC API (the SDK's client), every call bounded in time (a long poll
 * by its wait, plus a margin) and sent alone: a heartbeat never waits in a batch behind a long poll.
 */
export function createProvisionerApi(options: ProvisionerApiOptions): ProvisionerApi {
  const { provisioner } = createHiatusClient({ url: options.url, token: options.token, batch: false });
  const { provisionerId } = options;
  const within = (ms: number) => ({ signal: AbortSignal.timeout(ms) });
  return {
    acquire: ({ waitMs, ...filter }) =>
      provisioner.acquire.mutate({ provisionerId, waitMs, ...filter }, within(waitMs + defaults.requestTimeoutMs)),
    heartbeat: async (buildId, attempt) => {
      await provisioner.heartbeat.mutate({ buildId, attempt }, within(defaults.requestTimeoutMs));
    },
    complete: async (buildId, outcome, attempt) => {
      await provisioner.complete.mutate({ buildId, attempt, ...outcome }, within(defaults.requestTimeoutMs));
    },
    previousConversation: async (buildId) =>
      (await provisioner.previousConversation.query({ buildId }, within(defaults.conversationTimeoutMs))).messages,
    shouldRun: async (taskIds) =>
      (await provisioner.shouldRun.query({ taskIds }, within(defaults.requestTimeoutMs))).taskIds,
  };
}

/**
 * What a failed call means for the daemon:
 * - `lost`: the job is no longer this provisioner's (CONFLICT, NOT_FOUND): drop it;
 * - `refused`: the server will never take this input (BAD_REQUEST and the like): do not send it again;
 * - `unavailable`: anything else (no answer, a timeout, a 5xx, a refused key): try again later.
 */
export type CallFailure = 'lost' | 'refused' | 'unavailable';

export function callFailure(error: unknown): CallFailure {
  const code = hiatusErrorCode(error);
  if (code === 'CONFLICT' || code === 'NOT_FOUND') return 'lost';
  if (code === 'BAD_REQUEST' || code === 'PAYLOAD_TOO_LARGE' || code === 'UNPROCESSABLE_CONTENT') return 'refused';
  return 'unavailable';
}

/** "CONFLICT: build … is not a running job", "fetch failed: connect ECONNREFUSED 127.0.0.1:8080": for a log line. */
export function describeFailure(error: unknown): string {
  const code = hiatusErrorCode(error);
  if (code) return `${code}: ${(error as Error).message}`;
  // fetch hides the reason in its causes.
  const messages: string[] = [];
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if (cause.name === 'TimeoutError') return 'the request timed out';
    if (cause.message && !messages.includes(cause.message)) messages.push(cause.message);
  }
  return messages.join(': ') || String(error);
}
