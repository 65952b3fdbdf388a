import { z } from 'zod';
import { storableText } from '../agentapi/schema.ts';

/** Free text from a caller: what PostgreSQL can store. */
export const text = storableText;

/** Ids are UUIDs (any version: key ids are derived from hashes). */
export const id = z.guid('must be a UUID');
export const pageLimit = (max: number, fallback: number) => z.number().int().min(1).max(max).default(fallback);
