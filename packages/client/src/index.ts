/**
 * @hiatus/client: the typed way to talk to a Hiatus server from TypeScript.
 *
 * ```ts
 * import { createHiatusClient } from '@hiatus/client';
 * const hiatus = createHiatusClient({ url: 'http://localhost:8080', token: process.env.HIATUS_TOKEN! });
 * const task = await hiatus.tasks.create.mutate({ name: 'fix-ci', prompt: 'make CI green', agentUrl: 'http://127.0.0.1:3284' });
 * ```
 */
import type { ApiErrorCode, AppRouter } from '@hiatus/server/router';
import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  httpSubscriptionLink,
  splitLink,
  type TRPCClient,
  TRPCClientError,
  type TRPCLink,
} from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { retries } from './retries.ts';

export {
  type EventPayloads,
  type EventType,
  type VerifyOptions,
  verifyWebhook,
  type WebhookEvent,
  WebhookVerificationError,
} from './webhooks.ts';
export type { AppRouter };
/** The input of every procedure, by path: `RouterInputs['tasks']['create']`. */
export type RouterInputs = inferRouterInputs<AppRouter>;
/** The output of every procedure, by path: `RouterOutputs['tasks']['logs']`. */
export type RouterOutputs = inferRouterOutputs<AppRouter>;

export type Task = RouterOutputs['tasks']['get'];
export type TaskStatus = Task['status'];
export type Build = RouterOutputs['builds']['list']['items'][number];
export type BuildReason = Build['reason'];
export type LogPage = RouterOutputs['tasks']['logs'];
export type LogEntry = LogPage['entries'][number];
/** A segment of a task's history (one agent lifetime), as a log page describes it. */
export type LogSegment = LogPage['segments'][number];
/** The segments of a task's history, as `snapshots.segments` lists them. */
export type HistorySegment = RouterOutputs['snapshots']['segments']['segments'][number];
export type Snapshot = RouterOutputs['snapshots']['get'];
export type PauseResult = RouterOutputs['tasks']['pause'];
/** A send's answer: `queued: false` (the agent took it now) or `queued: true` with the inbox's `messageId`. */
export type SendResult = RouterOutputs['tasks']['send'];
/** A message waiting in a task's inbox, as `tasks.logs` lists it under `pending`. */
export type PendingMessage = LogPage['pending'][number];
export type AuditRecord = RouterOutputs['audit']['list']['items'][number];
/** One version of a template: its driver, settings (without `env`: its names alone, in `envNames`), parameters, policies and `resume` setting. */
export type Template = RouterOutputs['templates']['get'];
/** What a resume of a template's tasks does: its own `command`, a recap `message` queued first, its `messageMaxBytes`. */
export type TemplateResume = NonNullable<Template['resume']>;

export type HiatusClient = TRPCClient<AppRouter>;

export type HiatusClientOptions = {
  /** The server's base URL, such as `http://localhost:8080`; the client adds `/trpc`. */
  url: string;
  /** An API key, sent as `Authorization: Bearer <token>`. */
  token: string;
  /** A fetch to use instead of the global one (for tests, proxies, retries). */
  fetch?: typeof globalThis.fetch;
  /**
   * Whether queries and mutations made together go in one request (the default, at most 50 to it).
   * `false` sends each alone: for calls that must not wait on one another, such as a long poll beside
   * short calls, each bounded by its own signal.
   */
  batch?: boolean;
  /**
   * How many more times a call is tried when that is safe (default 2; 0: never): a query refused
   * with 429 or 503 or lost to the network, a mutation refused with 429 or whose connection was
   * refused. A mutation the server may have received (a 503, a connection broken after sending) is
   * never sent twice. The wait is the answer's `Retry-After` (one past 30 s is not waited for: the
   * error is thrown), else a backoff from 250 ms.
   */
  maxRetries?: number;
};

/** A typed client: `client.tasks.pause.mutate({ id })`, `client.tasks.watch.subscribe({ id }, { onData })`. */
export function createHiatusClient(options: HiatusClientOptions): HiatusClient {
  return createTRPCClient<AppRouter>({ links: hiatusLinks(options) });
}

/**
 * The links `createHiatusClient` is made of, for a tRPC client of your own (with more links, or
 * through `@trpc/tanstack-react-query`): dates as `Date`, the key on every request, subscriptions as
 * server-sent events, `snapshots.get` always alone, everything else batched unless `batch: false`.
 *
 * ```ts
 * const client = createTRPCClient<AppRouter>({ links: [loggerLink(), ...hiatusLinks({ url, token })] });
 * ```
 */
export function hiatusLinks(options: HiatusClientOptions): TRPCLink<AppRouter>[] {
  const url = `${options.url.replace(/\/+$/, '')}/trpc`;
  const authorization = `Bearer ${options.token}`;
  // Without a fetch of the caller's, tRPC takes the global one at each request; so does the stream.
  const { fetch } = options;
  const single = httpLink({ url, transformer: superjson, fetch, headers: { authorization } });
  return [
    retries({ maxRetries: options.maxRetries ?? 2 }),
    splitLink({
      condition: (op) => op.type === 'subscription',
      true: httpSubscriptionLink({
        url,
        transformer: superjson,
        // Server-sent events through a fetch that carries the key, which a browser EventSource cannot.
        EventSource,
        eventSourceOptions: {
          fetch: (input, init) =>
            (fetch ?? globalThis.fetch)(input, { ...init, headers: { ...init?.headers, authorization } }),
        },
      }),
      false:
        options.batch === false
          ? single
          : splitLink({
              // The server takes one whole snapshot per request: such a read is never batched with another.
              condition: (op) => op.path === 'snapshots.get',
              true: single,
              // Within the server's batch limit (HIATUS_MAX_BATCH_SIZE, 100 by default).
              false: httpBatchLink({ url, transformer: superjson, fetch, headers: { authorization }, maxItems: 50 }),
            }),
    }),
  ];
}

/** The codes a Hiatus call can fail with: the server's own list (`ApiErrorCode`), not a copy of it. */
export type HiatusErrorCode = ApiErrorCode;

export type HiatusError = TRPCClientError<AppRouter>;

/**
 * Whether `error` came from Hiatus, and (with `code`) whether it is that kind:
 * `if (isHiatusError(e, 'CONFLICT')) …`. The error's `data` holds the code, the request id and,
 * for BAD_REQUEST, the input problems (`zodIssues`).
 */
export function isHiatusError(error: unknown, code?: HiatusErrorCode): error is HiatusError {
  if (!(error instanceof TRPCClientError)) return false;
  return code === undefined || (error as HiatusError).data?.code === code;
}

/** The code of a Hiatus error, or null for anything else (a network failure is TRPCClientError without data). */
export function hiatusErrorCode(error: unknown): HiatusErrorCode | null {
  return isHiatusError(error) ? ((error.data?.code as HiatusErrorCode | undefined) ?? null) : null;
}
