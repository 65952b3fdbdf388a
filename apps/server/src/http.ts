import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { type TRPCError, transformTRPCResponse } from '@trpc/server';
import type { TRPCRequestInfo } from '@trpc/server/http';
import type { Registry } from 'prom-client';
import type { App } from './app.ts';
import { bearerToken, keyDigest, secretsMatch } from './auth/keys.ts';
import { authenticate } from './auth/principals.ts';
import type { Config } from './config.ts';
import { createConsoleFiles, isConsolePath } from './console-files.ts';
import { type Db, pingDatabase } from './db/connection.ts';
import { pendingMigrations } from './db/migrate.ts';
import type { RequestOrigin } from './domain/actor.ts';
import { HiatusError } from './domain/errors.ts';
import { PerKeySlots, PerKeyTurns, requestPlace } from './limits/concurrency.ts';
import { RateLimiter } from './limits/rate.ts';
import type { Logger } from './logger.ts';
import { restBasePath } from './rest/base-path.ts';
import { createRequestContext, type RequestContext } from './trpc/context.ts';
import { formattedError } from './trpc/error-shape.ts';
import { toTRPCError } from './trpc/errors.ts';
import { createNodeHandler } from './trpc/node-adapter.ts';
import { appRouter } from './trpc/router.ts';

export type HttpDeps = {
  db: Db;
  app: App;
  log: Logger;
  maxBodyBytes: number;
  metrics: Registry;
  /** When set, /metrics answers only `Authorization: Bearer <metricsToken>` (HIATUS_METRICS_TOKEN). */
  metricsToken?: string;
  /** Without a token, whether /metrics answers anyone: only when the server listens on loopback alone. */
  metricsOpen: boolean;
  /** One key's share of the API in this process (HIATUS_RATE_LIMIT_*, HIATUS_MAX_BATCH_SIZE, ...). */
  limits: Config['limits'];
};

type RestSurface = {
  rest: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void>;
  openApi: (req: http.IncomingMessage, res: http.ServerResponse) => void;
};

/** The API's per-key limits as this process counts them. */
type KeyLimits = {
  maxBatchSize: number;
  rate: RateLimiter | null;
  /** Requests whose calls were counted against their key's rate before tRPC read them. */
  counted: WeakSet<http.IncomingMessage>;
  watches: PerKeySlots;
  turns: PerKeyTurns;
};

/**
 * The HTTP front: health probes, the tRPC API under /trpc (also as REST paths under /api/v1, described
 * at /openapi.json) and the web console at /.
 */
export function createHttpServer(deps: HttpDeps): http.Server {
  const { ratePerSecond, rateBurst, maxOpenWatchesPerKey, maxBatchSize, maxConcurrentCallsPerKey } = deps.limits;
  const limits: KeyLimits = {
    maxBatchSize,
    rate: ratePerSecond > 0 ? new RateLimiter({ perSecond: ratePerSecond, burst: rateBurst }) : null,
    counted: new WeakSet(),
    watches: new PerKeySlots(maxOpenWatchesPerKey, 'watch streams'),
    turns: new PerKeyTurns(maxConcurrentCallsPerKey),
  };
  // The web console (apps/console, built by `pnpm install`) at every path the server does not answer itself.
  const consoleFiles = createConsoleFiles();
  const trpc = createNodeHandler({
    router: appRouter,
    basePath: '/trpc/',
    maxBodySize: deps.maxBodyBytes,
    // Refused with a clearer message before tRPC (refusalBeforeApi); this is tRPC's own backstop.
    maxBatchSize,
    createContext: ({ req, res, info }) => requestContext(deps, limits, req, res, info),
    responseMeta: ({ errors }) => retryAfter(errors),
    onError: ({ error, path }) => logFailure(error, path),
  });
  // The same procedures as REST paths: the same refusals, context (key check) and error logging.
  // Loaded at the first REST or /openapi.json request: trpc-to-openapi and zod-openapi weigh some
  // 30 MiB in a process that may never be asked for them.
  let restSurface: Promise<RestSurface> | undefined;
  const loadRestSurface = () =>
    (restSurface ??= import('./rest/handler.ts').then(({ createRestHandler, createOpenApiHandler }) => ({
      rest: createRestHandler({
        maxBodyBytes: deps.maxBodyBytes,
        requestIdOf,
        refusal: (req, url) => refusalBeforeApi(limits, req, url),
        createContext: ({ req, res, info }) => requestContext(deps, limits, req, res, info),
        onError: logFailure,
      }),
      openApi: createOpenApiHandler({ requestIdOf, onError: (error) => logFailure(error, 'openapi.json') }),
    })));
  function logFailure(error: TRPCError, path: string | undefined): void {
    if (error.code === 'INTERNAL_SERVER_ERROR') deps.log.error({ err: error, path }, 'procedure failed');
  }

  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz')
      return void readiness(deps.db).then(({ status, body }) => sendJson(res, status, body));
    if (url.pathname === '/metrics') {
      const refused = deps.metricsToken
        ? !secretsMatch(bearerToken(req.headers.authorization) ?? '', deps.metricsToken)
        : !deps.metricsOpen;
      if (refused) {
        res.setHeader('www-authenticate', 'Bearer');
        return sendJson(res, 401, {
          error: deps.metricsToken
            ? 'metrics need "Authorization: Bearer <HIATUS_METRICS_TOKEN>"'
            : 'metrics need a token when the server listens beyond loopback: set HIATUS_METRICS_TOKEN, then send "Authorization: Bearer <HIATUS_METRICS_TOKEN>"',
        });
      }
      return void sendMetrics(deps.metrics, res);
    }
    if (url.pathname.startsWith('/trpc/')) {
      const refusal = refusalBeforeApi(limits, req, url);
      if (refusal) return sendApiError(res, refusal, requestIdOf(req, res));
      return void trpc(req, res, url);
    }
    if (url.pathname === '/openapi.json') return void loadRestSurface().then(({ openApi }) => openApi(req, res));
    if (url.pathname === restBasePath || url.pathname.startsWith(`${restBasePath}/`))
      return void loadRestSurface().then(({ rest }) => rest(req, res, url));
    if (isConsolePath(url.pathname)) return void consoleFiles(req, res, url.pathname);
    sendJson(res, 404, { error: 'not found', path: url.pathname });
  });
}

const requestIdPattern = /^[\w.:-]{1,128}$/;

/** The request's id: the caller's `x-request-id` if it is sane, else a new one; echoed back in the response. */
function requestIdOf(req: http.IncomingMessage, res: http.ServerResponse): string {
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
  res.setHeader('x-request-id', requestId);
  return requestId;
}

/**
 * What a tRPC request is refused for before tRPC reads it, if anything: a batch over the cap, or
 * a key over its rate (every call of a batch counts). The bucket is found from the key itself,
 * whose id is derived from the whole secret (so no one else can drain it): a key over its rate
 * costs no database work, and its refused batch one small answer rather than an error per call.
 * An event stream is counted when tRPC has opened it, so that its refusal arrives as its event.
 */
function refusalBeforeApi(limits: KeyLimits, req: http.IncomingMessage, url: URL): HiatusError | null {
  const calls = callsIn(url);
  if (calls > limits.maxBatchSize) {
    return new HiatusError(
      'bad_input',
      `a batch may hold at most ${limits.maxBatchSize} calls and this one has ${calls}: send them in smaller batches (httpBatchLink's maxItems)`,
    );
  }
  const token = bearerToken(req.headers.authorization);
  if (!limits.rate || token === null || req.headers.accept?.includes('text/event-stream')) return null;
  try {
    limits.rate.take(keyDigest(token).id, calls);
  } catch (error) {
    if (error instanceof HiatusError) return error;
    throw error;
  }
  limits.counted.add(req);
  return null;
}

/** How many calls a tRPC request carries, counted as tRPC counts them (in the decoded path). */
function callsIn(url: URL): number {
  if (url.searchParams.get('batch') !== '1') return 1;
  try {
    return decodeURIComponent(url.pathname).split(',').length;
  } catch {
    return 1; // tRPC refuses the bad encoding itself
  }
}

/**
 * Answers a whole request with one API error, as tRPC answers a request that fails before its
 * calls (its client gives the error to every call of the batch), with `Retry-After` when the
 * error says when to come back.
 */
function sendApiError(res: http.ServerResponse, cause: HiatusError, requestId: string): void {
  const { status, shape } = formattedError(cause, requestId);
  if (cause.retryAfterMs) res.setHeader('retry-after', String(Math.ceil(cause.retryAfterMs / 1000)));
  sendJson(res, status, transformTRPCResponse(appRouter._def._config, { error: shape }));
}

/**
 * Who is asking, once per request: the request id (the caller's `x-request-id` if it is sane,
 * else a new one, echoed back in the response) and the API key, checked before any body is read.
 * The key's open watch streams are limited here, and an event stream's call counted against its rate.
 */
async function requestContext(
  deps: HttpDeps,
  limits: KeyLimits,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  info: TRPCRequestInfo,
): Promise<RequestContext> {
  const requestId = requestIdOf(req, res);
  const origin: RequestOrigin = {
    requestId,
    ipAddress: req.socket.remoteAddress?.replace(/^::ffff:/, ''),
    userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'] : undefined,
  };
  const services = {
    app: deps.app,
    log: deps.log,
    limits: {
      takeTurn: (keyId: string, signal?: AbortSignal) => limits.turns.take(keyId, signal),
      holdHeavyRead: requestPlace(deps.app.heavyReads, (then) => (res.closed ? then() : res.once('close', then))),
    },
  };
  const token = bearerToken(req.headers.authorization);
  if (req.headers.authorization !== undefined && token === null) {
    return createRequestContext(services, {
      requestId,
      principal: null,
      authError: 'the Authorization header must be "Bearer <key>"',
    });
  }
  if (token === null) return createRequestContext(services, { requestId, principal: null, authError: null });
  // An event stream's call, not counted before tRPC opened it (see refusalBeforeApi).
  if (!limits.counted.has(req)) withApiError(() => limits.rate?.take(keyDigest(token).id, info.calls.length));
  const checked = await authenticate(deps.db, token, origin, deps.app.keys).catch((error: unknown) => {
    deps.log.warn({ requestId, err: error }, 'could not check an API key');
    return null;
  });
  if (checked === null) {
    return createRequestContext(services, { requestId, principal: null, authError: null, authUnavailable: true });
  }
  if (!checked.ok) {
    deps.log.info({ requestId, reason: checked.reason }, 'refused an API key');
    return createRequestContext(services, {
      requestId,
      principal: null,
      authError: 'the API key is not valid: unknown, expired or revoked',
    });
  }
  if (info.type === 'subscription') {
    const release = withApiError(() => limits.watches.take(checked.principal.keyId));
    if (res.closed) release();
    else res.once('close', release);
  }
  return createRequestContext(services, { requestId, principal: checked.principal, authError: null });
}

/** Runs a limit's check; its refusal leaves as an API error (TOO_MANY_REQUESTS), for every call of the request. */
function withApiError<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw error instanceof HiatusError ? toTRPCError(error) : error;
  }
}

/** `Retry-After` (whole seconds) when a call was refused for a limit that says when to come back. */
function retryAfter(errors: TRPCError[]): { headers?: Headers } {
  const ms = Math.max(0, ...errors.map((e) => (e.cause instanceof HiatusError ? (e.cause.retryAfterMs ?? 0) : 0)));
  return ms > 0 ? { headers: new Headers({ 'retry-after': String(Math.ceil(ms / 1000)) }) } : {};
}

type Readiness = { status: number; body: { status: 'ready' | 'not ready'; reason?: string } };

/** Ready when the database answers and every migration has been applied. */
async function readiness(db: Db): Promise<Readiness> {
  try {
    await pingDatabase(db);
    const pending = await pendingMigrations(db);
    if (pending.length > 0) {
      return { status: 503, body: { status: 'not ready', reason: `migrations pending: ${pending.join(', ')}` } };
    }
    return { status: 200, body: { status: 'ready' } };
  } catch (error) {
    return { status: 503, body: { status: 'not ready', reason: `database unreachable: ${(error as Error).message}` } };
  }
}

async function sendMetrics(registry: Registry, res: http.ServerResponse): Promise<void> {
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(body);
  } catch (error) {
    sendJson(res, 503, { error: `metrics unavailable: ${(error as Error).message}` });
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}
