import { infoOutput } from './outputs.ts';
import { apiKeysRouter, meProcedure, usersRouter } from './routers/accounts.ts';
import { buildsRouter, provisionerRouter } from './routers/builds.ts';
import { eventsRouter } from './routers/events.ts';
import { auditRouter, telemetryRouter } from './routers/observability.ts';
import { snapshotsRouter } from './routers/snapshots.ts';
import { tasksRouter } from './routers/tasks.ts';
import { templatesRouter } from './routers/templates.ts';
import { webhooksRouter } from './routers/webhooks.ts';
import { publicProcedure, restRoute, router } from './trpc.ts';

/** The whole API; its type is the contract the client SDK is built from. */
export const appRouter = router({
  /** The service's name and API version, for a client to check what it talks to; no key needed. */
  info: publicProcedure
    .meta(
      restRoute('GET', '/info', {
        summary: "The service's name and API version",
        description: 'For a client to check what it talks to; no key needed.',
        protect: false,
      }),
    )
    .output(infoOutput)
    .query(() => ({ service: 'hiatus' as const, apiVersion: 1 })),
  /** Who the presented key speaks for; any valid key. */
  me: meProcedure,
  tasks: tasksRouter,
  templates: templatesRouter,
  snapshots: snapshotsRouter,
  builds: buildsRouter,
  provisioner: provisionerRouter,
  events: eventsRouter,
  webhooks: webhooksRouter,
  users: usersRouter,
  apiKeys: apiKeysRouter,
  audit: auditRouter,
  telemetry: telemetryRouter,
});

export type AppRouter = typeof appRouter;
/** The codes an API error carries (`error.data.code`). */
export type { ApiErrorCode } from './errors.ts';
