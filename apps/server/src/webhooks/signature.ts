import { createHmac, randomBytes } from 'node:crypto';

/**
 * How a delivery is signed (the SDK's `verifyWebhook` checks it): header
 * `hiatus-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the secret>`.
 * The timestamp is inside the signed text, so a receiver that refuses old timestamps refuses replays.
 */
export const signatureHeader = 'hiatus-signature';

/** A new endpoint's signing secret: shown to its owner once. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

export function signPayload(secret: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
  return `t=${timestamp},v1=${mac}`;
}
