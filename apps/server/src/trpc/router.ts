import { publicProcedure, router } from './trpc.ts';

/** The whole API; its type is the contract the client SDK is built from. */
export const appRouter = router({
  /** The service's name and version, for a client to check what it talks to. */
  info: publicProcedure.query(() => ({ service: 'hiatus' as const, apiVersion: 1 })),
});

export type AppRouter = typeof appRouter;
