import type http from 'node:http';
import { type AnyProcedure, TRPCError } from '@trpc/server';
import type { TRPCRequestInfo } from '@trpc/server/http';
import { getInputOutputParsers, getPathRegExp, normalizePath } from 'trpc-to-openapi';
import { HiatusError } from '../domain/errors.ts';
import type { RequestContext } from '../trpc/context.ts';
import { toTRPCError } from '../trpc/errors.ts';
import { appRouter } from '../trpc/router.ts';
import { createCallerFactory } from '../trpc/trpc.ts';
import { openApiDocument, restBasePath, restProcedures } from './openapi.ts';
import { problemOf, retryAfterMsOf, sendProblem } from './problem.ts';

export type RestOptions = {
  maxBodyBytes: number;
  /** The request's id, as /trpc gives it (echoed in `x-request-id`), for an answer made before the context. */
  requestIdOf(req: http.IncomingMessage, res: http.ServerResponse): string;
  /** What /trpc refuses a request for before any call runs (the key's rate), if anything. */
  refusal(req: http.IncomingMessage, url: URL): HiatusError | null;
  /** /trpc's own context: the request id and the key, checked. */
  createContext(opts: {
    req: http.IncomingMessage;
    res: http.ServerResponse;
    info: TRPCRequestInfo;
  }): Promise<RequestContext>;
  onError(error: TRPCError, path: string | undefined): void;
};

type Route = {
  method: string;
  pattern: RegExp;
  /** The procedure's path in the router (`tasks.pause`). */
  path: string;
  procedure: AnyProcedure;
  protect: boolean;
};

const createCaller = createCallerFactory(appRouter);

/**
 * The REST paths under /api/v1: each is a tRPC procedure whose meta names its method and path
 * (see `restRoute`), called through the router with /trpc's own context, so it has the same key
 * check, rate limit (a REST call is one call), turns, services and error mapping. Answers are plain
 * JSON (dates as ISO strings), errors application/problem+json.
 *
 * trpc-to-openapi generates the document, but its HTTP handler is not used: it sets zod's
 * `coerce` flag on the procedures' own input schemas, which would change what /trpc accepts
 * (`"false"` would become `true`), and it ignores a JSON body sent with a charset. Here query values
 * are converted for their fields without touching the schemas, and the body is read once, bounded.
 */
export function createRestHandler(
  options: RestOptions,
): (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> {
  const routes: Route[] = restProcedures().map(({ path, procedure, route }) => ({
    method: route.method,
    pattern: getPathRegExp(normalizePath(`${restBasePath}${route.path}`)),
    path,
    procedure,
    protect: route.protect !== false,
  }));

  return async (req, res, url) => {
    let requestId: string | null = null;
    let path: string | undefined;
    try {
      const pathname = normalizePath(url.pathname);
      const found = findRoute(routes, req.method ?? 'GET', pathname);
      if (!found.route) {
        requestId = options.requestIdOf(req, res);
        const error = found.allowed.length
          ? new TRPCError({
              code: 'METHOD_NOT_SUPPORTED',
              message: `${url.pathname} answers ${found.allowed.join(', ')}, not ${req.method}`,
            })
          : new HiatusError('not_found', `no REST path ${req.method} ${url.pathname}; see /openapi.json`);
        return sendProblem(res, problemOf(error, url.pathname, requestId), { allow: found.allowed.join(', ') });
      }
      const { route, params } = found;
      path = route.path;
      // A REST call is one call, however its URL reads.
      const refused = options.refusal(req, new URL(url.pathname, url));
      if (refused) {
        requestId = options.requestIdOf(req, res);
        return sendProblem(res, problemOf(refused, url.pathname, requestId), { retryAfterMs: refused.retryAfterMs });
      }
      const abort = new AbortController();
      res.once('close', () => abort.abort());
      const ctx = await options.createContext({ req, res, info: requestInfo(route, url, abort.signal) });
      requestId = ctx.requestId;
      // Without a valid key the call fails at its key check: its body is not worth reading.
      const input =
        route.protect && !ctx.principal ? params : await inputOf(route, req, url, params, options.maxBodyBytes, res);
      const call = route.path
        .split('.')
        .reduce<unknown>(
          (at, segment) => (at as Record<string, unknown>)[segment],
          createCaller(ctx, { signal: abort.signal }),
        ) as (input: unknown) => Promise<unknown>;
      sendJson(res, 200, await call(input));
    } catch (cause) {
      const error = toTRPCError(cause);
      options.onError(error, path);
      requestId ??= options.requestIdOf(req, res);
      sendProblem(res, problemOf(error, url.pathname, requestId), { retryAfterMs: retryAfterMsOf(error) });
    }
  };
}

/** Answers GET /openapi.json: the document, generated once; its failures as problem+json too. */
export function createOpenApiHandler(options: {
  requestIdOf(req: http.IncomingMessage, res: http.ServerResponse): string;
  onError(error: TRPCError): void;
}): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  let body: string | undefined;
  return (req, res) => {
    const instance = '/openapi.json';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const error = new TRPCError({
        code: 'METHOD_NOT_SUPPORTED',
        message: `/openapi.json answers GET, not ${req.method}`,
      });
      return sendProblem(res, problemOf(error, instance, options.requestIdOf(req, res)), { allow: 'GET, HEAD' });
    }
    try {
      body ??= JSON.stringify(openApiDocument());
    } catch (cause) {
      const error = toTRPCError(cause);
      options.onError(error);
      return sendProblem(res, problemOf(error, instance, options.requestIdOf(req, res)));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

function findRoute(
  routes: Route[],
  method: string,
  pathname: string,
): { route: Route; params: Record<string, string> } | { route: null; allowed: string[] } {
  const matching = routes.filter((route) => route.pattern.test(pathname));
  const route = matching.find((r) => r.method === method);
  if (!route) return { route: null, allowed: matching.map((r) => r.method) };
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(route.pattern.exec(pathname)?.groups ?? {})) {
    try {
      params[name] = decodeURIComponent(value);
    } catch {
      throw new HiatusError('bad_input', `the path's ${name} is not valid URL encoding`);
    }
  }
  return { route, params };
}

/** What /trpc's context is told of the request: one call of this procedure. */
function requestInfo(route: Route, url: URL, signal: AbortSignal): TRPCRequestInfo {
  return {
    accept: null,
    type: route.procedure._def.type,
    isBatchCall: false,
    calls: [
      {
        path: route.path,
        procedure: route.procedure,
        batchIndex: 0,
        getRawInput: async () => undefined,
        result: () => undefined,
      },
    ],
    connectionParams: null,
    signal,
    url,
  };
}

/** A zod schema's definition, as far as turning query strings into its values needs. */
type SchemaDef = { type: string; innerType?: { _zod: { def: SchemaDef } }; element?: { _zod: { def: SchemaDef } } };
const defOf = (schema: unknown): SchemaDef | undefined => (schema as { _zod?: { def: SchemaDef } })?._zod?.def;

/** The schema under `.optional()`, `.default()`, `.nullable()`. */
function unwrapped(def: SchemaDef | undefined): SchemaDef | undefined {
  let at = def;
  while (at?.innerType && ['optional', 'default', 'prefault', 'nullable'].includes(at.type)) at = at.innerType._zod.def;
  return at;
}

/**
 * The call's input: path parameters, with the query's (GET, DELETE) or the JSON body's (POST,
 * PATCH) fields. A query value becomes a number or boolean when its field is one and it reads as
 * one; anything else is left for the procedure's schema to refuse in its own words.
 */
async function inputOf(
  route: Route,
  req: http.IncomingMessage,
  url: URL,
  params: Record<string, string>,
  maxBodyBytes: number,
  res: http.ServerResponse,
): Promise<unknown> {
  const schema = getInputOutputParsers(route.procedure as never).inputParser;
  if (route.method === 'GET' || route.method === 'DELETE') {
    const fields = (unwrapped(defOf(schema)) as { shape?: Record<string, unknown> } | undefined)?.shape ?? {};
    const input: Record<string, unknown> = {};
    for (const key of new Set(url.searchParams.keys())) {
      const field = unwrapped(defOf(fields[key]));
      const values = url.searchParams.getAll(key);
      input[key] =
        field?.type === 'array'
          ? values.map((v) => fromQuery(v, unwrapped(field.element?._zod.def)))
          : values.length === 1
            ? fromQuery(values[0]!, field)
            : values;
    }
    return withPathParams(input, params);
  }
  const body = await readJsonBody(req, maxBodyBytes, res);
  if (body === undefined) return params;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HiatusError('bad_input', 'the body must be a JSON object');
  }
  return withPathParams(body as Record<string, unknown>, params);
}

function fromQuery(value: string, field: SchemaDef | undefined): unknown {
  if (field?.type === 'number' && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (field?.type === 'boolean' && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

/** The path's parameters win; the same field with another value in the query or body is refused. */
function withPathParams(input: Record<string, unknown>, params: Record<string, string>): Record<string, unknown> {
  for (const [name, value] of Object.entries(params)) {
    if (name in input && input[name] !== value) {
      throw new HiatusError('bad_input', `${name} is in the path; leave it out of the query and body or give the same`);
    }
  }
  return { ...input, ...params };
}

/**
 * The request's JSON body, at most `maxBytes` (HIATUS_MAX_BODY_BYTES, as /trpc); undefined when
 * empty. A larger one is refused (413) without reading the rest; the connection then closes.
 */
async function readJsonBody(req: http.IncomingMessage, maxBytes: number, res: http.ServerResponse): Promise<unknown> {
  const tooLarge = () => {
    res.setHeader('connection', 'close');
    return new HiatusError('too_large', `the request body is larger than ${maxBytes} bytes (HIATUS_MAX_BODY_BYTES)`);
  };
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) return void chunks.push(chunk);
      // Stop reading but keep the socket: the answer still has to go out on it.
      req.off('data', onData).pause();
      reject(tooLarge());
    };
    req.on('data', onData).once('end', resolve).once('error', reject);
  });
  if (size === 0) return undefined;
  const mediaType = req.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new TRPCError({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      message: `the body must be JSON, sent with "Content-Type: application/json" (not ${mediaType ?? 'none'})`,
    });
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new HiatusError('bad_input', `the body is not valid JSON: ${(error as Error).message}`);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body) ?? 'null';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}
