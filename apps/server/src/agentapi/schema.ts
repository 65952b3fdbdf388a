import { z } from 'zod';

const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Text PostgreSQL can store, in a TEXT column or inside JSONB: well-formed Unicode without NUL.
 * Anything else is refused at the edge, as bad input (or a garbled agent answer), never a 500.
 */
export const storableText = z
  .string()
  .refine((s) => !s.includes('\u0000') && !loneSurrogate.test(s), 'must be valid Unicode text without NUL characters');

/** One message of an agent's conversation, as AgentAPI sends it (unknown extra fields are kept). */
export type AgentMessage = {
  id: number;
  role: 'user' | 'agent';
  content: string;
  /** RFC 3339 date-time. */
  time: string;
  [field: string]: unknown;
};

// Typed by the plain type above, so the types the client SDK bundles need no zod.
export const agentMessageSchema: z.ZodType<AgentMessage> = z.looseObject({
  id: z.number().int().nonnegative(),
  role: z.enum(['user', 'agent']),
  content: storableText,
  time: z.iso.datetime({ offset: true }),
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
