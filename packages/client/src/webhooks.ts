import { createHmac, timingSafeEqual } from 'node:crypto';
import type { EventPayloads, EventType } from '@hiatus/server/events';

export type { EventPayloads, EventType };

/** A lifecycle event as a webhook carries it; `type` tells which payload it has. */
export type WebhookEvent = {
  [T in EventType]: {
    /** Grows in commit order; the same event delivered twice has the same id. */
    id: string;
    type: T;
    /** ISO 8601. */
    occurredAt: string;
    taskId: string | null;
    ownerId: string;
    payload: EventPayloads[T];
  };
}[EventType];

/** Why a delivery was refused by `verifyWebhook`. */
export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
}

export type VerifyOptions = {
  /** Oldest signature timestamp accepted, in seconds from now (replay protection): 300 unless said. */
  toleranceSeconds?: number;
  /** The time to check against, in milliseconds (tests). */
  now?: number;
};

type Headers = Record<string, string | string[] | undefined> | { get(name: string): string | null };

/**
 * Checks a webhook delivery and returns its event: the `hiatus-signature` header
 * (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`) must match `secret` and `t` must be
 * within `toleranceSeconds` of now. Pass the body exactly as received (before any JSON parsing).
 *
 * @example
 * app.post('/hooks', express.raw({ type: 'application/json' }), (req, res) => {
 *   const event = verifyWebhook(req.body, req.headers, process.env.HIATUS_WEBHOOK_SECRET!);
 *   if (event.type === 'task.paused') console.log(event.taskId, event.payload.reason);
 *   res.sendStatus(204);
 * });
 */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  headers: Headers,
  secret: string,
  options: VerifyOptions = {},
): WebhookEvent {
  const header = headerValue(headers, 'hiatus-signature');
  if (!header) throw new WebhookVerificationError('the hiatus-signature header is missing');
  const parts = new Map(
    header.split(',').map((part) => {
      const at = part.indexOf('=');
      return [part.slice(0, at).trim(), part.slice(at + 1).trim()] as const;
    }),
  );
  const timestamp = Number(parts.get('t'));
  const signature = parts.get('v1') ?? '';
  if (!Number.isInteger(timestamp) || !/^[0-9a-f]{64}$/.test(signature)) {
    throw new WebhookVerificationError('the hiatus-signature header is malformed');
  }
  const body = typeof rawBody === 'string' ? rawBody : Buffer.from(rawBody).toString('utf8');
  const expected = createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    throw new WebhookVerificationError('the signature does not match: wrong secret or altered body');
  }
  const tolerance = options.toleranceSeconds ?? 300;
  const age = (options.now ?? Date.now()) / 1000 - timestamp;
  if (Math.abs(age) > tolerance) {
    throw new WebhookVerificationError(`the signature is ${Math.round(age)} s old, beyond ${tolerance} s: a replay?`);
  }
  return JSON.parse(body) as WebhookEvent;
}

function headerValue(headers: Headers, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  const value = record[name] ?? Object.entries(record).find(([key]) => key.toLowerCase() === name)?.[1];
  return Array.isArray(value) ? value[0] : value;
}
