import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new API key's secret: shown once to its owner, never stored. */
export function generateApiKey(): string {
  return `hiatus_${randomBytes(32).toString('base64url')}`;
}

/**
 * How a key is stored and found: its SHA-256, and an id made of the hash's first 16 bytes. Any
 * string works as a key this way (HIATUS_ADMIN_TOKEN is the operator's choice).
 */
export function keyDigest(key: string): { id: string; hash: Buffer } {
  const hash = createHash('sha256').update(key, 'utf8').digest();
  const hex = hash.subarray(0, 16).toString('hex');
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { id, hash };
}

/** Compares a presented key's hash with the stored one in constant time. */
export function hashesMatch(stored: Buffer, presented: Buffer): boolean {
  return stored.length === presented.length && timingSafeEqual(stored, presented);
}

/** Whether a presented secret is the expected one, compared in constant time whatever their lengths. */
export function secretsMatch(presented: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The bearer token of an Authorization header, or null when there is none. */
export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S{1,512})\s*$/i.exec(header ?? '');
  return match?.[1] ?? null;
}
