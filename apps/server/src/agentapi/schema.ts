import { z } from 'zod';
import { defaults } from '../defaults.ts';

const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const isStorable = (s: string): boolean => !s.includes('\u0000') && !loneSurrogate.test(s);

/**
 * Text PostgreSQL can store, in a TEXT column or inside JSONB: well-formed Unicode without NUL.
 * Anything else is refused at the edge, as bad input (or a garbled agent answer), never a 500.
 */
export const storableText = z.string().refine(isStorable, 'must be valid Unicode text without NUL characters');

/**
 * One message of an agent's conversation, as AgentAPI sends it. Unknown extra fields are kept,
 * within limits (see `extraFieldsProblem`); past them the whole answer is refused.
 */
export type AgentMessage = {
  id: number;
  role: 'user' | 'agent';
  content: string;
  /** RFC 3339 date-time. */
  time: string;
  [field: string]: unknown;
};

const agentApiFields = new Set(['id', 'role', 'content', 'time']);

/**
 * What is wrong with a message's fields beyond AgentAPI's own, or null. They are kept in the
 * snapshot only within limits (defaults.ts): so many fields, so many bytes of JSON, so deep; only
 * JSON values (not a Date or a BigInt that superjson revived from a push); text PostgreSQL can
 * store. The walk keeps its own stack, so no nesting, however deep, can overflow the call stack.
 *
 * @example extraFieldsProblem({ id: 0, role: 'agent', content: '', time, x: { y: ['\u0000'] } })
 *   // → "it holds text PostgreSQL cannot store (NUL or a lone surrogate)"
 */
function extraFieldsProblem(message: Record<string, unknown>): string | null {
  const limits = {
    fields: defaults.maxAgentMessageExtraFields,
    bytes: defaults.maxAgentMessageExtraBytes,
    depth: defaults.maxAgentMessageDepth,
  };
  const names = Object.keys(message).filter((name) => !agentApiFields.has(name));
  if (names.length > limits.fields) {
    return `it has ${names.length} fields beyond AgentAPI's, over the limit of ${limits.fields}`;
  }
  const unstorable = 'it holds text PostgreSQL cannot store (NUL or a lone surrogate)';
  // The message itself is level 1: its fields' values are at level 2.
  const pending: Array<{ value: unknown; depth: number }> = [{ value: pick(message, names), depth: 1 }];
  let bytes = 0;
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value, depth } = next;
    if (value === null || value === undefined || typeof value === 'boolean') bytes += 5;
    else if (typeof value === 'number') {
      if (!Number.isFinite(value)) return 'it holds a number JSON cannot carry';
      bytes += 24;
    } else if (typeof value === 'string') {
      if (!isStorable(value)) return unstorable;
      bytes += Buffer.byteLength(value) + 2;
    } else if (Array.isArray(value) || isPlainObject(value)) {
      if (depth > limits.depth) return `it nests deeper than the limit of ${limits.depth} levels`;
      const children = Array.isArray(value) ? value : Object.values(value);
      if (!Array.isArray(value)) {
        for (const key of Object.keys(value)) {
          if (!isStorable(key)) return unstorable;
          bytes += Buffer.byteLength(key) + 3;
        }
      }
      bytes += 2 + children.length;
      // Counted before they are walked: a long array is refused without a step per element.
      if (bytes <= limits.bytes) for (const child of children) pending.push({ value: child, depth: depth + 1 });
    } else {
      return 'it holds a value that is not JSON';
    }
    if (bytes > limits.bytes) return `its fields beyond AgentAPI's take more than the limit of ${limits.bytes} bytes`;
  }
  return null;
}

function pick(record: Record<string, unknown>, names: string[]): Record<string, unknown> {
  return Object.fromEntries(names.map((name) => [name, record[name]]));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

// Typed by the plain type above, so the types the client SDK bundles need no zod.
export const agentMessageSchema: z.ZodType<AgentMessage> = z
  .looseObject({
    id: z
      .number()
      .int()
      .nonnegative()
      .max(defaults.maxAgentMessageId, `must be at most ${defaults.maxAgentMessageId}, the largest id Hiatus stores`),
    role: z.enum(['user', 'agent']),
    content: storableText,
    time: z.iso.datetime({ offset: true }),
  })
  .superRefine((message, ctx) => {
    const problem = extraFieldsProblem(message);
    if (problem) ctx.addIssue({ code: 'custom', message: `the message is refused: ${problem}` });
  });

/**
 * A conversation, oldest first. Ids run on one by one (AgentAPI's id is the message's position;
 * a pushed tail of a conversation may start later), which lets a stored snapshot be paged by index.
 */
export const conversationSchema = z.array(agentMessageSchema).superRefine((messages, ctx) => {
  const first = messages[0]?.id ?? 0;
  const gap = messages.findIndex((m, i) => m.id !== first + i);
  if (gap >= 0) {
    ctx.addIssue({
      code: 'custom',
      path: [gap, 'id'],
      message: `message ids must run on one by one: expected ${first + gap}, got ${messages[gap]?.id}`,
    });
  }
});

export const messagesResponseSchema = z.looseObject({ messages: conversationSchema });

export const statusResponseSchema = z.looseObject({
  status: z.enum(['running', 'stable']),
  agent_type: z.string().optional(),
});
export type AgentStatus = z.infer<typeof statusResponseSchema>['status'];

export const postMessageResponseSchema = z.looseObject({ ok: z.boolean() });
