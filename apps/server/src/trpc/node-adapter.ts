import type http from 'node:http';
import { type AnyTRPCRouter, TRPCError } from '@trpc/server';
import { internal_exceptionHandler } from '@trpc/server/adapters/node-http';
import { type ResponseMetaFn, resolveResponse, type TRPCRequestInfo } from '@trpc/server/http';

/**
 * tRPC over node:http, answering exactly as tRPC's own node adapter does (the same `resolveResponse`
 * makes every answer), without its per-request cost on Node 20: an undici `Request` with a linked
 * abort signal for every call, copies of the options object, and a web-stream pipe plus a chunked
 * write for every JSON answer. Here the request is a light object with what `resolveResponse` reads,
 * and a JSON answer goes out in one write with its length. Streams (SSE, JSONL) are piped as tRPC does.
 */
export type NodeAdapterOptions<TRouter extends AnyTRPCRouter, TContext> = {
  router: TRouter;
  /** The path prefix before the procedure's path, e.g. `/trpc/`. */
  basePath: string;
  maxBodySize: number;
  maxBatchSize?: number;
  createContext: (opts: {
    req: http.IncomingMessage;
    res: http.ServerResponse;
    info: TRPCRequestInfo;
  }) => Promise<TContext>;
  responseMeta?: ResponseMetaFn<TRouter>;
  onError?: (opts: { error: TRPCError; path: string | undefined }) => void;
};

export function createNodeHandler<TRouter extends AnyTRPCRouter, TContext>(
  options: NodeAdapterOptions<TRouter, TContext>,
): (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> {
  const base = options.basePath.replace(/\/+$/, '');
  const onError = ({ error, path }: { error: TRPCError; path: string | undefined }) =>
    options.onError?.({ error, path });
  return async (req, res, url) => {
    const path = url.pathname.slice(base.length).replace(/^\/+|\/+$/g, '');
    try {
      const request = new NodeRequest(req, res, url, options.maxBodySize);
      const response = await resolveResponse<TRouter>({
        router: options.router,
        req: request as unknown as Request,
        path,
        maxBatchSize: options.maxBatchSize,
        error: null,
        createContext: ({ info }) => options.createContext({ req, res, info }) as never,
        responseMeta: options.responseMeta,
        onError,
      });
      await writeResponse(response, res, request.signal);
    } catch (cause) {
      // Answering failed itself: one error, shaped and reported as tRPC's own adapter does.
      const handlerOptions = { router: options.router, req, res, path, onError };
      internal_exceptionHandler(handlerOptions as Parameters<typeof internal_exceptionHandler>[0])(cause);
    }
  };
}

/**
 * The part of a Fetch `Request` that `resolveResponse` reads: method, URL, headers, a signal that
 * aborts when the client goes away, and the body (read whole, within `maxBodySize`). FormData and
 * octet-stream inputs, which Hiatus does not take, get a real `Request` made from that body.
 */
class NodeRequest {
  readonly method: string;
  readonly url: string;
  readonly headers = new Headers();
  readonly signal: AbortSignal;
  #body: Promise<Buffer> | undefined;

  constructor(
    private readonly incoming: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    private readonly maxBodySize: number,
  ) {
    this.method = incoming.method ?? 'GET';
    this.url = url.href;
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (Array.isArray(value)) for (const item of value) this.headers.append(name, item);
      else if (value !== undefined) this.headers.append(name, value);
    }
    const aborts = new AbortController();
    this.signal = aborts.signal;
    const onAbort = () => aborts.abort();
    // A response closed before it ended: the client left.
    res.once('close', () => {
      if (!res.writableEnded) onAbort();
      incoming.off('aborted', onAbort);
    });
    incoming.once('aborted', onAbort);
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  get body(): ReadableStream<Uint8Array> | null {
    return this.method === 'GET' || this.method === 'HEAD' ? null : this.#asFetchRequest().body;
  }

  async formData(): Promise<FormData> {
    return this.#asFetchRequest().formData();
  }

  #asFetchRequest(): Request {
    const body = this.bytes();
    return new Request(this.url, {
      method: this.method,
      headers: this.headers,
      signal: this.signal,
      body: new ReadableStream({
        async start(controller) {
          try {
            controller.enqueue(new Uint8Array(await body));
            controller.close();
          } catch (error) {
            controller.error(error);
          }
        },
      }),
      duplex: 'half',
    } as RequestInit);
  }

  /** The whole body, read once; PAYLOAD_TOO_LARGE past the limit (the rest is left unread). */
  bytes(): Promise<Buffer> {
    this.#body ??= new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= this.maxBodySize) return void chunks.push(chunk);
        done();
        reject(new TRPCError({ code: 'PAYLOAD_TOO_LARGE' }));
      };
      const onEnd = () => {
        done();
        resolve(Buffer.concat(chunks, size));
      };
      const onError = (error: Error) => {
        done();
        reject(error);
      };
      const done = () => {
        this.incoming.off('data', onData).off('end', onEnd).off('error', onError);
      };
      this.incoming.on('data', onData).on('end', onEnd).on('error', onError);
    });
    return this.#body;
  }
}

/** Streamed answers (subscriptions, JSONL batches) go out as they come; anything else whole. */
const streamedTypes = ['text/event-stream', 'application/jsonl'];

async function writeResponse(response: Response, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
  // A status the context already set (as tRPC's adapter allows) stands.
  if (res.statusCode === 200) res.statusCode = response.status;
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (!response.body) return void res.end();
  const type = response.headers.get('content-type') ?? '';
  if (!streamedTypes.some((streamed) => type.startsWith(streamed))) {
    // A string goes out with the head in one write; tRPC's JSON answers are text.
    const body = await response.text();
    res.setHeader('content-length', Buffer.byteLength(body));
    return void res.end(body);
  }
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) break;
      if (!res.write(value)) await drained(res);
      (res as http.ServerResponse & { flush?: () => void }).flush?.();
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    signal.removeEventListener('abort', cancel);
    res.end();
  }
}

/** Until the socket takes more, or closes. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) return resolve();
    const cleanup = () => {
      res.off('drain', onDrain).off('close', onDrain).off('error', onFail);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onFail = (error: Error) => {
      cleanup();
      reject(error);
    };
    res.once('drain', onDrain).once('close', onDrain).once('error', onFail);
  });
}
