import { z } from 'zod';
import { eventTypes } from '../../domain/events.ts';
import {
  changeWebhook,
  createWebhook,
  getWebhook,
  listWebhooksFor,
  redeliver,
  removeWebhook,
  testWebhook,
  webhookDeliveries,
} from '../../webhooks/endpoints.ts';
import { id, pageLimit, serialId, text } from '../inputs.ts';
import { readProcedure, router, writeProcedure } from '../trpc.ts';

const webhookUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).max(2048);
const wanted = z.array(z.enum(eventTypes)).max(eventTypes.length);
const deliveryId = serialId('a delivery id');

/**
 * Endpoints that receive lifecycle events, signed (see the SDK's `verifyWebhook`). A member's get
 * their own tasks' events, an admin's every task's.
 */
export const webhooksRouter = router({
  /** Creates an endpoint; `secret` is in this answer only. `eventTypes` empty or absent: all types. */
  create: writeProcedure
    .input(z.strictObject({ url: webhookUrl, eventTypes: wanted.optional(), description: text.max(500).optional() }))
    .mutation(({ ctx, input }) => createWebhook(ctx.app, ctx.actor, input)),

  list: readProcedure.query(({ ctx }) => listWebhooksFor(ctx.app, ctx.actor)),

  get: readProcedure.input(z.object({ id })).query(({ ctx, input }) => getWebhook(ctx.app, ctx.actor, input.id)),

  /** Changes an endpoint; `enabled: true` also clears its failing mark. */
  update: writeProcedure
    .input(
      z.strictObject({
        id,
        url: webhookUrl.optional(),
        eventTypes: wanted.optional(),
        description: text.max(500).optional(),
        enabled: z.boolean().optional(),
      }),
    )
    .mutation(({ ctx, input: { id, ...changes } }) => changeWebhook(ctx.app, ctx.actor, id, changes)),

  delete: writeProcedure
    .input(z.object({ id }))
    .mutation(({ ctx, input }) => removeWebhook(ctx.app, ctx.actor, input.id)),

  /** The endpoint's deliveries, newest first, with every attempt (status code, duration, error). */
  deliveries: readProcedure
    .input(z.object({ id, limit: pageLimit(200, 50), cursor: deliveryId.optional() }))
    .query(({ ctx, input }) =>
      webhookDeliveries(ctx.app, ctx.actor, input.id, { limit: input.limit, before: input.cursor }),
    ),

  /** Sends a delivery again. */
  redeliver: writeProcedure
    .input(z.object({ id, deliveryId }))
    .mutation(({ ctx, input }) => redeliver(ctx.app, ctx.actor, input.id, input.deliveryId)),

  /** Sends a `webhook.test` event to this endpoint. */
  test: writeProcedure.input(z.object({ id })).mutation(({ ctx, input }) => testWebhook(ctx.app, ctx.actor, input.id)),
});
