import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AnyTRPCRouter, initTRPC, TRPCError } from '@trpc/server';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import superjson from 'superjson';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createNodeHandler } from './node-adapter.ts';

// Not in development mode: no stack traces, which would name each adapter's own frames.
const t = initTRPC.context<{ who: string }>().create({ transformer: superjson, isDev: false });
const router = t.router({
  hello: t.procedure.input(z.object({ name: z.string() })).query(({ input, ctx }) => ({
    greeting: `hello ${input.name} from ${ctx.who}`,
    at: new Date(0),
  })),
  echo: t.procedure.input(z.object({ text: z.string() })).mutation(({ input }) => input.text),
  refuse: t.procedure.query(() => {
    throw new TRPCError({ code: 'CONFLICT', message: 'already pausing' });
  }),
  ticks: t.procedure.subscription(async function* () {
    for (let i = 0; i < 3; i++) yield i;
  }),
});

const maxBodySize = 1024;
const createContext = async () => ({ who: 'test' });

/** A server on loopback for a request listener; its base URL. */
async function listen(listener: http.RequestListener): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe("the lean tRPC adapter answers as tRPC's own node adapter does", () => {
  let ours: { url: string; server: http.Server };
  let theirs: { url: string; server: http.Server };

  beforeAll(async () => {
    const lean = createNodeHandler({ router, basePath: '/trpc/', maxBodySize, createContext });
    ours = await listen((req, res) => void lean(req, res, new URL(req.url ?? '/', 'http://localhost')));
    theirs = await listen(createHTTPHandler({ router, basePath: '/trpc/', maxBodySize, createContext }));
  });
  afterAll(() => {
    for (const { server } of [ours, theirs]) server.close();
  });

  const input = (value: unknown) => encodeURIComponent(JSON.stringify(superjson.serialize(value)));
  const json = { 'content-type': 'application/json' };
  const requests: Array<[string, string, RequestInit?]> = [
    ['a query', `/trpc/hello?input=${input({ name: 'ada' })}`],
    ['a batch', `/trpc/hello,hello?batch=1&input=${input({ 0: { name: 'a' }, 1: { name: 'b' } })}`],
    [
      'a mutation',
      '/trpc/echo',
      { method: 'POST', headers: json, body: JSON.stringify(superjson.serialize({ text: 'hi' })) },
    ],
    ['an input that fails validation', `/trpc/hello?input=${input({ name: 3 })}`],
    ['a refusal', '/trpc/refuse'],
    ['an unknown procedure', '/trpc/nope'],
    ['a query sent as POST', '/trpc/hello', { method: 'POST', body: '{}' }],
    ['a body that is not JSON', '/trpc/echo', { method: 'POST', body: '{nope' }],
    [
      'a body over the limit',
      '/trpc/echo',
      { method: 'POST', body: JSON.stringify({ json: { text: 'x'.repeat(5000) } }) },
    ],
    ['HEAD', '/trpc/hello', { method: 'HEAD' }],
    ['a subscription as an event stream', '/trpc/ticks', { headers: { accept: 'text/event-stream' } }],
  ];

  for (const [what, path, init] of requests) {
    it(`for ${what}`, async () => {
      const [a, b] = await Promise.all([ours, theirs].map(({ url }) => fetch(`${url}${path}`, init)));
      expect(a!.status).toBe(b!.status);
      expect(a!.headers.get('content-type')).toBe(b!.headers.get('content-type'));
      expect(await a!.text()).toBe(await b!.text());
    });
  }

  it('sends a JSON answer in one piece with its length in bytes, not chunked', async () => {
    const response = await fetch(`${ours.url}/trpc/hello?input=${input({ name: 'Zoë ✓' })}`);
    const body = await response.text();
    expect(body).toContain('hello Zoë ✓');
    expect(response.headers.get('content-length')).toBe(String(Buffer.byteLength(body)));
    expect(response.headers.get('transfer-encoding')).toBeNull();
  });

  // tRPC is patched (patches/@trpc__server*.patch) to hand a query or a mutation the request's
  // signal itself rather than a linked copy: a client that leaves must still abort the call.
  it('aborts a query when its client leaves', async () => {
    const left = deferred();
    const running = deferred();
    const waiting = initTRPC.create().router({
      wait: initTRPC.create().procedure.query(
        ({ signal }) =>
          new Promise<string>((resolve) => {
            signal?.addEventListener('abort', () => {
              left.resolve();
              resolve('aborted');
            });
            running.resolve();
          }),
      ),
    });
    await serving(waiting, async (url) => {
      const client = new AbortController();
      const request = fetch(`${url}/trpc/wait`, { signal: client.signal }).catch(() => 'left');
      await running.promise;
      client.abort();
      await expect(unlessHung(left.promise)).resolves.toBeUndefined();
      expect(await request).toBe('left');
    });
  });

  it('aborts a streaming call when its client leaves', async () => {
    const left = deferred();
    const slow = initTRPC.create().router({
      // One item, then the stream stays open until its signal aborts.
      forever: initTRPC.create().procedure.subscription(async function* ({ signal }) {
        const aborted = new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve()));
        void aborted.then(left.resolve);
        yield 0;
        await aborted;
      }),
    });
    await serving(slow, async (url) => {
      const client = new AbortController();
      const response = await fetch(`${url}/trpc/forever`, { signal: client.signal });
      await response.body!.getReader().read();
      client.abort();
      await expect(unlessHung(left.promise)).resolves.toBeUndefined();
    });
  });
});

/** A promise and its resolve, for a test to wait on something a procedure does. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** `promise`, or a rejection after 30 s: a guard against a hang, not a measure of speed. */
const unlessHung = <T>(promise: Promise<T>) =>
  Promise.race([
    promise,
    new Promise<never>((_, no) => setTimeout(() => no(new Error('not within 30 s')), 30_000).unref()),
  ]);

/** Runs `use` against `router` behind the lean adapter on loopback, then closes it. */
async function serving(router: AnyTRPCRouter, use: (url: string) => Promise<void>): Promise<void> {
  const handler = createNodeHandler({ router, basePath: '/trpc/', maxBodySize, createContext });
  const { url, server } = await listen((req, res) => void handler(req, res, new URL(req.url ?? '/', 'http://x')));
  try {
    await use(url);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}
