import { z } from 'zod';
import { createApiKey, createUser, revokeApiKey } from '../../auth/accounts.ts';
import { apiKeyScopes, userRoles } from '../../domain/actor.ts';
import { id, text } from '../inputs.ts';
import { adminProcedure, router, writeProcedure } from '../trpc.ts';

export const usersRouter = router({
  create: adminProcedure
    .input(
      z.object({
        username: z
          .string()
          .regex(
            /^[a-z0-9][a-z0-9_.-]{0,63}$/,
            'lowercase letters, digits, ".", "_" and "-", up to 64, starting with a letter or digit',
          ),
        role: z.enum(userRoles).default('member'),
      }),
    )
    .mutation(({ ctx, input }) => createUser(ctx.app, ctx.actor, input)),
});

const newApiKeyInput = z.object({
  userId: id.optional(),
  name: text.max(128).optional(),
  scope: z.enum(apiKeyScopes).optional(),
  taskId: id.optional(),
  expiresAt: z.date().optional(),
});

export const apiKeysRouter = router({
  /** Creates a key; the plain key is in the answer this once and never again. */
  create: writeProcedure
    .input(newApiKeyInput.default({}))
    .mutation(({ ctx, input }) => createApiKey(ctx.app, ctx.actor, input)),

  revoke: writeProcedure
    .input(z.object({ id }))
    .mutation(({ ctx, input }) => revokeApiKey(ctx.app, ctx.actor, input.id)),
});
