import { z } from 'zod';
import { storableText } from '../agentapi/schema.ts';
import { provisionerTagRules } from '../domain/templates.ts';

/** Free text from a caller: what PostgreSQL can store. */
export const text = storableText;

/** Ids are UUIDs (any version: key ids are derived from hashes). */
export const id = z.guid('must be a UUID');
/**
 * An id of a bigserial column (an event, a webhook delivery, an audit record) as given out: a
 * decimal string no larger than PostgreSQL's bigint, so a bigger one is a 400, not the database's
 * "out of range".
 */
export const serialId = (what: string) =>
  z
    .string()
    .regex(/^\d{1,19}$/, `not ${what} this service gave out`)
    .refine((value) => BigInt(value) <= 9_223_372_036_854_775_807n, `not ${what} this service gave out`);

/** A positive number of an INTEGER column (a build number, a template version), within its range. */
export const positiveInteger = z
  .number()
  .int()
  .positive()
  .max(2 ** 31 - 1);

export const pageLimit = (max: number, fallback: number) => z.number().int().min(1).max(max).default(fallback);

/** A template's name: what the database accepts, said in words. */
export const templateName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_.-]{0,63}$/,
    'lowercase letters, digits, ".", "_" and "-", up to 64, starting with a letter or digit',
  );

/** Template parameter names, and the values a task gives them. */
export const parameterName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'letters, digits and "_", up to 64');
export const parameterValues = z.record(parameterName, text.max(4096));

/** Provisioner tags, `{ host: 'a' }`: see `provisionerTagRules`. */
export const provisionerTags = z
  .record(
    z.string().regex(provisionerTagRules.name, 'a tag name: letters, digits, ".", "_", "/" and "-", up to 64'),
    z.string().regex(provisionerTagRules.value, 'a tag value: 1 to 128 characters without spaces, "," or "="'),
  )
  .refine((tags) => Object.keys(tags).length <= provisionerTagRules.max, `at most ${provisionerTagRules.max} tags`);

/** An idle timeout, in seconds: up to 30 days. */
export const idleTimeoutSeconds = z
  .number()
  .int()
  .positive()
  .max(30 * 86_400);
