import { hiatusLinks } from '@hiatus/client';
import type { AppRouter } from '@hiatus/server/router';
import { QueryClient } from '@tanstack/react-query';
import { createTRPCClient, type TRPCClient, TRPCClientError } from '@trpc/client';
import { createTRPCContext } from '@trpc/tanstack-react-query';

/** The hooks that give the tRPC API as TanStack Query options: `useTRPC().tasks.list.queryOptions()`. */
export const { TRPCProvider, useTRPC } = createTRPCContext<AppRouter>();

/**
 * A client of this server's `/trpc` with `token`, made of the SDK's links (`hiatusLinks`): watches as
 * server-sent events through a fetch that carries the key (a browser's EventSource cannot), a whole
 * snapshot read alone, everything else batched.
 */
export function createApiClient(token: string, origin: string = window.location.origin): TRPCClient<AppRouter> {
  return createTRPCClient<AppRouter>({ links: hiatusLinks({ url: origin, token }) });
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
