import { initTRPC, TRPCError } from '@trpc/server';
import { ZodError } from 'zod';
import type { ApiKeyScope } from '../domain/actor.ts';
import { type RequestContext, type RequestLimits, servicesOf } from './context.ts';
import { toTRPCError } from './errors.ts';
import { transformer } from './transformer.ts';

/**
 * What a procedure's meta may say: its REST route and words for /openapi.json, the part of
 * trpc-to-openapi's `OpenApiMeta` Hiatus uses. Spelled out in plain types because the SDK bundles
 * the router's type, meta included, and the library's own type drags zod's classes along.
 */
export type ProcedureMeta = {
  openapi?: {
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
    path: `/${string}`;
    summary?: string;
    description?: string;
    /** False: no key needed. */
    protect?: boolean;
    tags?: string[];
    errorResponses?: number[];
  };
};

/** A bad input in one sentence (zod's own message is its issues as JSON); the issues stay in `data.zodIssues`. */
function inputProblems(issues: Array<{ path: string[]; message: string }>): string {
  return issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
}

// What JSON.parse threw, for a body or `input` parameter that is no JSON, in place of the runtime's words.
const notJson = 'the input is not valid JSON';

const t = initTRPC
  .context<RequestContext>()
  .meta<ProcedureMeta>()
  .create({
    transformer,
    errorFormatter({ shape, error, ctx }) {
      const issues =
        error.cause instanceof ZodError
          ? error.cause.issues.map((i) => ({ path: i.path.map(String), message: i.message, code: String(i.code) }))
          : null;
      return {
        ...shape,
        message: issues ? inputProblems(issues) : error.cause instanceof SyntaxError ? notJson : shape.message,
        data: {
          ...shape.data,
          // Stack traces stay in the logs.
          stack: undefined,
          requestId: ctx?.requestId ?? null,
          zodIssues: issues,
        },
      };
    },
  });

export const router = t.router;

/**
 * A procedure's REST path (under /api/v1, see rest/) and its words in /openapi.json: the same
 * procedure answers at /trpc and there. Error responses are described once, as problem+json, by
 * rest/openapi.ts, hence none here.
 */
export function restRoute(
  method: NonNullable<ProcedureMeta['openapi']>['method'],
  path: `/${string}`,
  words: { summary: string; description?: string; protect?: boolean },
): ProcedureMeta {
  const tag = path.split('/')[1] ?? '';
  return { openapi: { method, path, ...words, tags: [tag], errorResponses: [] } };
}
export const createCallerFactory = t.createCallerFactory;

/**
 * Every procedure: the services in its context, one log line per call (request id, actor,
 * procedure, outcome, duration), and domain errors mapped to API codes.
 */
const observed = t.procedure.use(async ({ ctx, path, type, next }) => {
  const started = performance.now();
  const { app, log, limits } = servicesOf(ctx);
  const result = await next({ ctx: { app, log, limits } });
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

/**
 * A valid key, not yet waiting its turn: `ctx.principal` is not nullable inside. After a
 * mutation the key's write position is noted, so its next lag-tolerant reads see it.
 */
const authenticated = observed.use(async ({ ctx, type, next }) => {
  if (ctx.authUnavailable) {
    throw new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'the database is unavailable; try again shortly' });
  }
  if (!ctx.principal) {
    throw new TRPCError({
      code: 'UNAUTHORIZED',
      message: ctx.authError ?? 'an API key is required: send it as "Authorization: Bearer <key>"',
    });
  }
  const result = await next({ ctx: { ...ctx, principal: ctx.principal, actor: ctx.principal.actor } });
  // A failed mutation may have committed something too (a recorded failure, a part of a batch).
  if (type === 'mutation') await ctx.app.readRouting.noteWrite(ctx.principal.keyId);
  return result;
});

/**
 * Runs a call in one of its key's turns: a key's calls run a few at a time, so a big batch waits
 * its turns rather than taking every database connection while other keys' calls wait.
 */
async function inTurn<T>(
  ctx: { principal: { keyId: string }; limits: RequestLimits },
  signal: AbortSignal | undefined,
  call: () => Promise<T>,
): Promise<T> {
  const release = await ctx.limits.takeTurn(ctx.principal.keyId, signal);
  try {
    return await call();
  } finally {
    release();
  }
}

/** A procedure for any valid key, run in one of the key's turns; `ctx.principal` is not nullable inside. */
export const authedProcedure = authenticated.use(({ ctx, signal, next }) => inTurn(ctx, signal, next));

function scoped(allowed: readonly ApiKeyScope[], what: string, base: typeof authenticated = authedProcedure) {
  return base.use(({ ctx, next }) => {
    if (!allowed.includes(ctx.principal.scope)) {
      throw new TRPCError({ code: 'FORBIDDEN', message: `a ${ctx.principal.scope} key cannot ${what}` });
    }
    return next();
  });
}

/** Reading: full and read-only keys. */
export const readProcedure = scoped(['full', 'read'], 'read tasks');
/**
 * Reading something whole (a snapshot): at most `heavyReadConcurrency` such requests run at once in
 * the process, each keeping its place until its response is written, and one such call per request.
 * The place is waited for before the key's turn, so a call waiting for one holds up none of the
 * key's other calls (whose batch may be what the place's holder is waiting for).
 */
export const heavyReadProcedure = scoped(['full', 'read'], 'read tasks', authenticated)
  .use(async ({ ctx, path, next }) => {
    await ctx.limits.holdHeavyRead(ctx.actor.userId, path);
    return next();
  })
  .use(({ ctx, signal, next }) => inTurn(ctx, signal, next));
/**
 * Reads that may lag behind the latest commits (lists, history, logs of paused tasks): their
 * services' `app.reads()` is the read replica when the caller's own writes have reached it.
 */
export const laggingReadProcedure = readProcedure.use(({ ctx, next }) =>
  ctx.app.readRouting.run(ctx.principal.keyId, next),
);
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
/** Admin reads that may lag (audit, telemetry): see `laggingReadProcedure`. */
export const laggingAdminProcedure = adminProcedure.use(({ ctx, next }) =>
  ctx.app.readRouting.run(ctx.principal.keyId, next),
);
