import type { AppRouter } from '@hiatus/server/router';
import { QueryClient } from '@tanstack/react-query';
import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  httpSubscriptionLink,
  splitLink,
  type TRPCClient,
  TRPCClientError,
} from '@trpc/client';
import { createTRPCContext } from '@trpc/tanstack-react-query';
import { EventSource } from 'eventsource';
import superjson from 'superjson';

/** The hooks that give the tRPC API as TanStack Query options: `useTRPC().tasks.list.queryOptions()`. */
export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type ApiClient = TRPCClient<AppRouter>;

/**
 * A client of this server's `/trpc` with `token`, with the SDK's links (packages/client): watches as
 * server-sent events through a fetch that carries the key (a browser's EventSource cannot), a whole
 * snapshot read alone, everything else batched.
 */
export function createApiClient(token: string, origin: string = window.location.origin): ApiClient {
  const url = `${origin}/trpc`;
  const authorization = `Bearer ${token}`;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url,
          transformer: superjson,
          EventSource,
          eventSourceOptions: {
            fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, authorization } }),
          },
        }),
        false: splitLink({
          condition: (op) => op.path === 'snapshots.get',
          true: httpLink({ url, transformer: superjson, headers: { authorization } }),
          false: httpBatchLink({ url, transformer: superjson, headers: { authorization }, maxItems: 50 }),
        }),
      }),
    ],
  });
}

/** Queries are not retried when the server refused them: a refusal is shown, not hammered. */
export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: (failures, error) => !(error instanceof TRPCClientError && error.data?.code) && failures < 2,
        refetchOnWindowFocus: false,
      },
    },
  });
}

/** The API code of an error (`CONFLICT`, `FORBIDDEN`, ...), or null for a network failure or anything else. */
export function errorCode(error: unknown): string | null {
  return error instanceof TRPCClientError ? ((error.data as { code?: string } | undefined)?.code ?? null) : null;
}
