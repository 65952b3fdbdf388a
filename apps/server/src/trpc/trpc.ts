import { initTRPC, TRPCError } from '@trpc/server';
import superjson from 'superjson';
import { ZodError } from 'zod';
import type { ApiKeyScope } from '../domain/actor.ts';
import { type RequestContext, servicesOf } from './context.ts';
import { toTRPCError } from './errors.ts';

const t = initTRPC.context<RequestContext>().create({
  transformer: superjson,
  errorFormatter({ shape, error, ctx }) {
    const zod = error.cause instanceof ZodError ? error.cause.issues : null;
    return {
      ...shape,
      data: {
        ...shape.data,
        // Stack traces stay in the logs.
        stack: undefined,
        requestId: ctx?.requestId ?? null,
        zodIssues:
          zod?.map((issue) => ({ path: issue.path.map(String), message: issue.message, code: String(issue.code) })) ??
          null,
      },
    };
  },
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * Every procedure: the services in its context, one log line per call (request id, actor,
 * procedure, outcome, duration), and domain errors mapped to API codes.
 */
const observed = t.procedure.use(async ({ ctx, path, type, next }) => {
  const started = performance.now();
  const { app, log } = servicesOf(ctx);
  const result = await next({ ctx: { app, log } });
  // tRPC wraps what a handler throws in an INTERNAL_SERVER_ERROR; anything else is already an API error.
  const error = result.ok
    ? null
    : result.error.code === 'INTERNAL_SERVER_ERROR'
      ? toTRPCError(result.error.cause ?? result.error)
      : result.error;
  const line = {
    requestId: ctx.requestId,
    actor: ctx.principal ? ctx.principal.actor.userId : null,
    procedure: path,
    type,
    outcome: error ? error.code : 'OK',
    durationMs: Math.round((performance.now() - started) * 100) / 100,
  };
  if (error?.code === 'INTERNAL_SERVER_ERROR')
    log.error({ ...line, err: result.ok ? undefined : result.error.cause }, 'request');
  else log.info(line, 'request');
  if (result.ok) return result;
  throw error;
});

export const publicProcedure = observed;

/** A procedure for any valid key; `ctx.principal` is not nullable inside. */
export const authedProcedure = observed.use(({ ctx, next }) => {
  if (ctx.authUnavailable) {
    throw new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'the database is unavailable; try again shortly' });
  }
  if (!ctx.principal) {
    throw new TRPCError({
      code: 'UNAUTHORIZED',
      message: ctx.authError ?? 'an API key is required: send it as "Authorization: Bearer <key>"',
    });
  }
  return next({ ctx: { ...ctx, principal: ctx.principal, actor: ctx.principal.actor } });
});

function scoped(allowed: readonly ApiKeyScope[], what: string) {
  return authedProcedure.use(({ ctx, next }) => {
    if (!allowed.includes(ctx.principal.scope)) {
      throw new TRPCError({ code: 'FORBIDDEN', message: `a ${ctx.principal.scope} key cannot ${what}` });
    }
    return next();
  });
}

/** Reading: full and read-only keys. */
export const readProcedure = scoped(['full', 'read'], 'read tasks');
/** Changing things: full keys only. */
export const writeProcedure = scoped(['full'], 'change anything');
/** Pushing a snapshot: the task's own workspace key, or a full key of someone who may see the task. */
export const pushProcedure = scoped(['full', 'workspace'], 'push snapshots');
/** Build jobs: provisioner keys, or an admin's full key. */
export const provisionerProcedure = authedProcedure.use(({ ctx, next }) => {
  const { scope, actor } = ctx.principal;
  if (scope !== 'provisioner' && !(scope === 'full' && actor.role === 'admin')) {
    throw new TRPCError({ code: 'FORBIDDEN', message: 'build jobs need a provisioner key or an admin' });
  }
  return next();
});
/** Admin only, with a full key. */
export const adminProcedure = writeProcedure.use(({ ctx, next }) => {
  if (ctx.principal.actor.role !== 'admin') throw new TRPCError({ code: 'FORBIDDEN', message: 'admins only' });
  return next();
});
