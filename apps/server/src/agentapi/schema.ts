import { z } from 'zod';

/** One message of an agent's conversation, as AgentAPI sends it (unknown extra fields are kept). */
export const agentMessageSchema = z.looseObject({
  id: z.number().int().nonnegative(),
  role: z.enum(['user', 'agent']),
  content: z.string(),
  time: z.iso.datetime({ offset: true }),
});
export type AgentMessage = z.infer<typeof agentMessageSchema>;

export const messagesResponseSchema = z.looseObject({ messages: z.array(agentMessageSchema) });

export const statusResponseSchema = z.looseObject({
  status: z.enum(['running', 'stable']),
  agent_type: z.string().optional(),
});
export type AgentStatus = z.infer<typeof statusResponseSchema>['status'];

export const postMessageResponseSchema = z.looseObject({ ok: z.boolean() });
