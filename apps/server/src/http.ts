import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { TRPCError } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import type { TRPCRequestInfo } from '@trpc/server/http';
import type { Registry } from 'prom-client';
import type { App } from './app.ts';
import { bearerToken, keyDigest, secretsMatch } from './auth/keys.ts';
import { authenticate } from './auth/principals.ts';
import type { Config } from './config.ts';
import { type Db, pingDatabase } from './db/connection.ts';
import { pendingMigrations } from './db/migrate.ts';
import type { RequestOrigin } from './domain/actor.ts';
import { HiatusError } from './domain/errors.ts';
import { PerKeySlots, PerKeyTurns, requestPlace } from './limits/concurrency.ts';
import { RateLimiter } from './limits/rate.ts';
import type { Logger } from './logger.ts';
import { createRequestContext, type RequestContext } from './trpc/context.ts';
import { toTRPCError } from './trpc/errors.ts';
import { appRouter } from './trpc/router.ts';

export type HttpDeps = {
  db: Db;
  app: App;
  log: Logger;
  maxBodyBytes: number;
  metrics: Registry;
  /** When set, /metrics answers only `Authorization: Bearer <metricsToken>` (HIATUS_METRICS_TOKEN). */
  metricsToken?: string;
  /** One key's share of the API in this process (HIATUS_RATE_LIMIT_*, HIATUS_MAX_BATCH_SIZE, ...). */
  limits: Config['limits'];
};

/** The API's per-key limits as this process counts them. */
type KeyLimits = { rate: RateLimiter | null; watches: PerKeySlots; turns: PerKeyTurns };

/** The HTTP front: health probes and the tRPC API under /trpc. */
export function createHttpServer(deps: HttpDeps): http.Server {
  const { ratePerSecond, rateBurst, maxOpenWatchesPerKey, maxBatchSize, maxConcurrentCallsPerKey } = deps.limits;
  const limits: KeyLimits = {
    rate: ratePerSecond > 0 ? new RateLimiter({ perSecond: ratePerSecond, burst: rateBurst }) : null,
    watches: new PerKeySlots(maxOpenWatchesPerKey, 'watch streams'),
    turns: new PerKeyTurns(maxConcurrentCallsPerKey),
  };
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: '/trpc/',
    maxBodySize: deps.maxBodyBytes,
    // A larger batch is refused whole (BAD_REQUEST) before any of its calls is looked at.
    maxBatchSize,
    createContext: ({ req, res, info }) => requestContext(deps, limits, req, res, info),
    responseMeta: ({ errors }) => retryAfter(errors),
    onError: ({ error, path }) => {
      if (error.code === 'INTERNAL_SERVER_ERROR') deps.log.error({ err: error, path }, 'procedure failed');
    },
  });

  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz')
      return void readiness(deps.db).then(({ status, body }) => sendJson(res, status, body));
    if (url.pathname === '/metrics') {
      if (deps.metricsToken && !secretsMatch(bearerToken(req.headers.authorization) ?? '', deps.metricsToken)) {
        res.setHeader('www-authenticate', 'Bearer');
        return sendJson(res, 401, { error: 'metrics need "Authorization: Bearer <HIATUS_METRICS_TOKEN>"' });
      }
      return void sendMetrics(deps.metrics, res);
    }
    if (url.pathname.startsWith('/trpc/')) return void trpc(req, res);
    sendJson(res, 404, { error: 'not found', path: url.pathname });
  });
}

const requestIdPattern = /^[\w.:-]{1,128}$/;

/**
 * Who is asking, once per request: the request id (the caller's `x-request-id` if it is sane,
 * else a new one, echoed back in the response) and the API key, checked before any body is read.
 * The key's limits are applied here too: its rate (every call of a batch counts) before the key
 * is even looked up, so a key over its rate costs no database work, and its open watch streams.
 */
async function requestContext(
  deps: HttpDeps,
  limits: KeyLimits,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  info: TRPCRequestInfo,
): Promise<RequestContext> {
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
  res.setHeader('x-request-id', requestId);
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
  // The bucket is the key's own: its id is derived from the whole secret, so no one else can drain it.
  withApiError(() => limits.rate?.take(keyDigest(token).id, info.calls.length));
  const checked = await authenticate(deps.db, token, origin).catch((error: unknown) => {
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
export async function readiness(db: Db): Promise<Readiness> {
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
