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

/** The least an operator-chosen secret (HIATUS_ADMIN_TOKEN, HIATUS_METRICS_TOKEN) must be. */
const secretRules = Object.freeze({ minLength: 32, minDistinctCharacters: 10 });

/**
 * Why an operator-chosen secret is too weak to guard the service, or null when it will do: shorter
 * than 32 characters, with fewer than 10 distinct characters, one short string repeated, or with
 * white space (which no Authorization header can carry). A random value passes:
 * `openssl rand -base64 32`.
 */
export function weakSecretReason(secret: string): string | null {
  const advice = 'use a random value, such as the output of `openssl rand -base64 32`';
  if (/\s/.test(secret)) return `must not contain white space; ${advice}`;
  if (secret.length < secretRules.minLength) {
    return `must be at least ${secretRules.minLength} characters (it has ${secret.length}); ${advice}`;
  }
  const distinct = new Set(secret).size;
  if (distinct < secretRules.minDistinctCharacters) {
    return `has too little variety (${distinct} distinct characters, at least ${secretRules.minDistinctCharacters} needed); ${advice}`;
  }
  if (/^(.+)\1+$/s.test(secret)) return `is one short string repeated; ${advice}`;
  return null;
}

/** The bearer token of an Authorization header, or null when there is none. */
export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S{1,512})\s*$/i.exec(header ?? '');
  return match?.[1] ?? null;
}
