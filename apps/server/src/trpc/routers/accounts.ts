import { z } from 'zod';
import {
  createApiKey,
  createUser,
  describePrincipal,
  listApiKeysFor,
  listUsersFor,
  revokeApiKey,
} from '../../auth/accounts.ts';
import { defaults } from '../../defaults.ts';
import { apiKeyScopes, userRoles } from '../../domain/actor.ts';
import { id, pageLimit, text } from '../inputs.ts';
import { identityOutput } from '../outputs.ts';
import { adminProcedure, authedProcedure, readProcedure, restRoute, router, writeProcedure } from '../trpc.ts';

/** A page of a list: `cursor` is the previous page's `nextCursor`. */
const page = {
  limit: pageLimit(defaults.maxListPageSize, defaults.listPageSize),
  cursor: id.optional(),
};

/** Who the presented key speaks for (any key): user id, name and role, and the key's id, name, scope, task and expiry. */
export const meProcedure = authedProcedure
  .meta(
    restRoute('GET', '/me', {
      summary: 'Who the key speaks for',
      description: "The key's user (id, name, role) and the key itself (id, name, scope, task, expiry); any valid key.",
    }),
  )
  .output(identityOutput)
  .query(({ ctx }) => describePrincipal(ctx.app, ctx.principal));

export const usersRouter = router({
  /** Every user by name, page by page: admins only. */
  list: adminProcedure
    .input(z.object(page).default({ limit: defaults.listPageSize }))
    .query(({ ctx, input }) => listUsersFor(ctx.app, ctx.actor, input)),

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
  /**
   * The caller's own keys (an admin may name another `userId`), newest first, revoked and expired
   * ones included; never a secret or its hash.
   */
  list: readProcedure
    .input(z.object({ userId: id.optional(), ...page }).default({ limit: defaults.listPageSize }))
    .query(({ ctx, input }) => listApiKeysFor(ctx.app, ctx.actor, input)),

  /** Creates a key; the plain key is in the answer this once and never again. */
  create: writeProcedure
    .input(newApiKeyInput.default({}))
    .mutation(({ ctx, input }) => createApiKey(ctx.app, ctx.actor, input)),

  revoke: writeProcedure
    .input(z.object({ id }))
    .mutation(({ ctx, input }) => revokeApiKey(ctx.app, ctx.actor, input.id)),
});
