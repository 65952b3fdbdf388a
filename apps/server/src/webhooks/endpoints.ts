import type { App } from '../app.ts';
import { insertEvents } from '../db/events.ts';
import {
  type DeliveryRecord,
  deleteWebhook,
  findWebhook,
  insertDelivery,
  insertWebhook,
  listDeliveries,
  listWebhooks,
  requeueDelivery,
  updateWebhook,
  type Webhook,
  type WebhookChanges,
} from '../db/webhooks.ts';
import { seesAllTasks, type UserActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import type { EventType } from '../domain/events.ts';
import { generateWebhookSecret } from './signature.ts';

// An owner's endpoints get the events of their own tasks; an admin's, those of every task. Only
// the owner (or an admin) sees or changes an endpoint; anyone else is told it does not exist.

export type NewWebhook = { url: string; eventTypes?: readonly EventType[]; description?: string };

/** Creates an endpoint; its signing secret is in the answer this once. */
export async function createWebhook(
  app: Pick<App, 'checkWebhookUrl' | 'db'>,
  actor: UserActor,
  input: NewWebhook,
): Promise<Webhook & { secret: string }> {
  const url = await app.checkWebhookUrl(input.url);
  const secret = generateWebhookSecret();
  const webhook = await insertWebhook(app.db, {
    ownerId: actor.userId,
    allTasks: seesAllTasks(actor),
    url,
    eventTypes: input.eventTypes ?? [],
    secret,
    description: input.description ?? '',
  });
  return { ...webhook, secret };
}

export async function listWebhooksFor(app: Pick<App, 'db'>, actor: UserActor): Promise<Webhook[]> {
  return listWebhooks(app.db, seesAllTasks(actor) ? {} : { ownerId: actor.userId });
}

export async function getWebhook(app: Pick<App, 'db'>, actor: UserActor, id: string): Promise<Webhook> {
  const webhook = await findWebhook(app.db, id, seesAllTasks(actor) ? {} : { ownerId: actor.userId });
  if (!webhook) throw new HiatusError('not_found', `webhook ${id} not found`);
  return webhook;
}

export async function changeWebhook(
  app: Pick<App, 'checkWebhookUrl' | 'db'>,
  actor: UserActor,
  id: string,
  changes: WebhookChanges,
): Promise<Webhook> {
  await getWebhook(app, actor, id);
  const checked = changes.url === undefined ? changes : { ...changes, url: await app.checkWebhookUrl(changes.url) };
  const updated = await updateWebhook(app.db, id, checked);
  if (!updated) throw new HiatusError('not_found', `webhook ${id} not found`);
  return updated;
}

export async function removeWebhook(app: Pick<App, 'db'>, actor: UserActor, id: string): Promise<{ deleted: true }> {
  await getWebhook(app, actor, id);
  if (!(await deleteWebhook(app.db, id))) throw new HiatusError('not_found', `webhook ${id} not found`);
  return { deleted: true };
}

export async function webhookDeliveries(
  app: Pick<App, 'db'>,
  actor: UserActor,
  id: string,
  page: { limit: number; before?: string },
): Promise<{ items: DeliveryRecord[]; nextCursor: string | null }> {
  await getWebhook(app, actor, id);
  const { items, more } = await listDeliveries(app.db, id, page);
  return { items, nextCursor: more ? (items.at(-1)?.id ?? null) : null };
}

/** Sends one of the endpoint's deliveries again, from now. */
export async function redeliver(
  app: Pick<App, 'db' | 'events'>,
  actor: UserActor,
  id: string,
  deliveryId: string,
): Promise<{ queued: true }> {
  await getWebhook(app, actor, id);
  if (!(await requeueDelivery(app.db, id, deliveryId))) {
    throw new HiatusError('not_found', `webhook ${id} has no delivery ${deliveryId}`);
  }
  app.events.emit('change', {});
  return { queued: true };
}

/** Queues a `webhook.test` event for this endpoint alone. */
export async function testWebhook(
  app: Pick<App, 'db' | 'events'>,
  actor: UserActor,
  id: string,
): Promise<{ eventId: string; deliveryId: string }> {
  const webhook = await getWebhook(app, actor, id);
  const queued = await app.db.transaction().execute(async (trx) => {
    const [event] = await insertEvents(trx, [
      { type: 'webhook.test', taskId: null, ownerId: webhook.ownerId, payload: { webhookId: id } },
    ]);
    if (!event) throw new Error('the test event was not recorded');
    return { eventId: event.id, deliveryId: await insertDelivery(trx, id, event.id) };
  });
  app.events.emit('change', { eventId: queued.eventId });
  return queued;
}
