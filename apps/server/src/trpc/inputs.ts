import { z } from 'zod';

/** Ids are UUIDs (any version: key ids are derived from hashes). */
export const id = z.guid('must be a UUID');
export const pageLimit = (max: number, fallback: number) => z.number().int().min(1).max(max).default(fallback);
