import { tracked } from '@trpc/server';
import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { eventTypes } from '../../domain/events.ts';
import { listEventsFor, watchEvents } from '../../lifecycle/events.ts';
import { withApiErrors } from '../errors.ts';
import { id, pageLimit, serialId } from '../inputs.ts';
import { eventPageOutput } from '../outputs.ts';
import { laggingReadProcedure, readProcedure, restRoute, router } from '../trpc.ts';

/** An event id, as given out (a positive integer in a string). */
const eventId = serialId('an event id');

export const eventsRouter = router({
  /** Lifecycle events of the tasks the key may see, oldest first after `after`; pass `nextCursor` back as `after`. */
  list: laggingReadProcedure
    .meta(
      restRoute('GET', '/events', {
        summary: 'List lifecycle events',
        description:
          'Lifecycle events of the tasks the key may see, oldest first after `after`; pass `nextCursor` back as `after`.',
      }),
    )
    .input(
      z
        .object({
          taskId: id.optional(),
          after: eventId.optional(),
          types: z.array(z.enum(eventTypes)).max(eventTypes.length).optional(),
          limit: pageLimit(defaults.maxEventPageSize, defaults.eventPageSize),
        })
        .default({ limit: defaults.eventPageSize }),
    )
    .output(eventPageOutput)
    .query(({ ctx, input }) => listEventsFor(ctx.app, ctx.actor, input)),

  /**
   * Events as they commit, in any server process (server-sent events). From now, or after `after`;
   * a reconnecting client resumes from the last event it saw (`lastEventId`), missing none. Ends
   * with UNAUTHORIZED within seconds of its key being revoked or expiring.
   */
  watch: readProcedure
    .input(
      z
        .object({
          taskId: id.optional(),
          after: eventId.optional(),
          types: z.array(z.enum(eventTypes)).max(eventTypes.length).optional(),
          /** Set by the client on a reconnect: the id of the last event it received. */
          lastEventId: eventId.nullish(),
        })
        .default({}),
    )
    .subscription(async function* ({ ctx, input, signal }) {
      const after = input.lastEventId ?? input.after;
      const watching = watchEvents(ctx.app, ctx.actor, { ...input, after }, signal ?? new AbortController().signal, {
        keyId: ctx.principal.keyId,
      });
      for await (const event of withApiErrors(watching)) yield tracked(event.id, event);
    }),
});
