import type { App } from '../app.ts';
import { insertEvents } from '../db/events.ts';
import { claimOccasion, type OccasionKey } from '../db/schedules.ts';
import type { NewEvent } from '../domain/events.ts';

/**
 * Records a warning `event` once per occasion, whichever process comes first: the claim and the
 * event commit together. Returns whether this call recorded it.
 */
export async function warnOnce(
  app: Pick<App, 'db' | 'events'>,
  key: OccasionKey,
  now: Date,
  event: NewEvent,
): Promise<boolean> {
  const eventId = await app.db.transaction().execute(async (trx) => {
    if (!(await claimOccasion(trx, key, now))) return undefined;
    const [recorded] = await insertEvents(trx, [event]);
    return recorded?.id;
  });
  if (eventId) app.events.emit('change', { eventId, taskId: key.taskId });
  return eventId !== undefined;
}
