import { isApiKeyUsable } from '../db/api-keys.ts';
import type { Db } from '../db/connection.ts';
import { HiatusError } from '../domain/errors.ts';

/**
 * Refuses a long-lived call (a watch) once the key it was opened with is revoked or expired:
 * it was checked when the call began, and is checked again while the call lasts.
 */
export async function assertKeyStillValid(db: Db, keyId: string): Promise<void> {
  if (!(await isApiKeyUsable(db, keyId))) {
    throw new HiatusError('unauthorized', 'the API key was revoked or has expired: this stream has ended');
  }
}
