import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import type { Registry } from 'prom-client';
import type { App } from './app.ts';
import { bearerToken } from './auth/keys.ts';
import { authenticate } from './auth/principals.ts';
import { type Db, pingDatabase } from './db/connection.ts';
import { pendingMigrations } from './db/migrate.ts';
import type { RequestOrigin } from './domain/actor.ts';
import type { Logger } from './logger.ts';
import { createRequestContext, type RequestContext } from './trpc/context.ts';
import { appRouter } from './trpc/router.ts';

export type HttpDeps = {
  db: Db;
  app: App;
  log: Logger;
  maxBodyBytes: number;
  metrics: Registry;
};

/** The HTTP front: health probes and the tRPC API under /trpc. */
export function createHttpServer(deps: HttpDeps): http.Server {
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: '/trpc/',
    maxBodySize: deps.maxBodyBytes,
    createContext: ({ req, res }) => requestContext(deps, req, res),
    onError: ({ error, path }) => {
      if (error.code === 'INTERNAL_SERVER_ERROR') deps.log.error({ err: error, path }, 'procedure failed');
    },
  });

  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz')
      return void readiness(deps.db).then(({ status, body }) => sendJson(res, status, body));
    if (url.pathname === '/metrics') return void sendMetrics(deps.metrics, res);
    if (url.pathname.startsWith('/trpc/')) return void trpc(req, res);
    sendJson(res, 404, { error: 'not found', path: url.pathname });
  });
}

const requestIdPattern = /^[\w.:-]{1,128}$/;

/**
 * Who is asking, once per request: the request id (the caller's `x-request-id` if it is sane,
 * else a new one, echoed back in the response) and the API key, checked before any body is read.
 */
async function requestContext(
  deps: HttpDeps,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<RequestContext> {
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
  res.setHeader('x-request-id', requestId);
  const origin: RequestOrigin = {
    requestId,
    ipAddress: req.socket.remoteAddress?.replace(/^::ffff:/, ''),
    userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'] : undefined,
  };
  const services = { app: deps.app, log: deps.log };
  const token = bearerToken(req.headers.authorization);
  if (req.headers.authorization !== undefined && token === null) {
    return createRequestContext(services, {
      requestId,
      principal: null,
      authError: 'the Authorization header must be "Bearer <key>"',
    });
  }
  if (token === null) return createRequestContext(services, { requestId, principal: null, authError: null });
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
  return createRequestContext(services, { requestId, principal: checked.principal, authError: null });
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
