import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackends } from '../../../apps/server/test/databases.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../../apps/server/test/test-server.ts';
import { createHiatusClient, hiatusErrorCode } from '../src/index.ts';

type Refusal = { status: 429 | 503; retryAfter?: string } | 'drop';

/**
 * A real loopback proxy in front of the server that refuses the next requests as told (an answer
 * shaped as the server's own, or a connection dropped after the request arrived) and forwards the
 * rest; it counts what reached it.
 */
class RefusingProxy {
  readonly arrivals: Array<{ path: string; at: number }> = [];
  plan: Refusal[] = [];
  private server = http.createServer((req, res) => {
    this.arrivals.push({ path: req.url ?? '', at: Date.now() });
    const refusal = this.plan.shift();
    if (refusal === 'drop') return void req.socket.destroy();
    if (refusal) {
      const code = refusal.status === 429 ? 'TOO_MANY_REQUESTS' : 'SERVICE_UNAVAILABLE';
      const body = JSON.stringify({
        error: { json: { message: 'refused by the test', code: -32000, data: { code, httpStatus: refusal.status } } },
      });
      res.writeHead(refusal.status, {
        'content-type': 'application/json',
        ...(refusal.retryAfter ? { 'retry-after': refusal.retryAfter } : {}),
      });
      return void res.end(body);
    }
    const upstream = http.request(`${this.target}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    req.pipe(upstream);
  });

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The calls that reached the proxy for `procedure`. */
  count(procedure: string): number {
    return this.arrivals.filter((a) => a.path.startsWith(`/trpc/${procedure}`)).length;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe.each(testBackends().slice(0, 1))('the SDK tries again what is safe to on %s', (backend) => {
  let running: TestServer;
  let proxy: RefusingProxy;
  let url: string;

  beforeAll(async () => {
    running = await startTestServer(backend);
    proxy = new RefusingProxy(running.server.url);
    url = await proxy.start();
  });
  afterAll(async () => {
    await proxy.close();
    await running.close();
  });

  const client = (maxRetries?: number) =>
    createHiatusClient({
      url,
      token: testAdminToken,
      batch: false,
      ...(maxRetries === undefined ? {} : { maxRetries }),
    });
  const taskNamed = async (name: string) =>
    (await client(0).tasks.list.query({})).items.filter((t) => t.name === name).length;

  it('tries a query again after 429, 503 and a dropped connection, twice by default', async () => {
    proxy.plan = [{ status: 503, retryAfter: '0' }, 'drop'];
    expect(await client().tasks.list.query({})).toMatchObject({ items: [] });
    expect(proxy.count('tasks.list')).toBe(3);

    proxy.plan = [{ status: 429 }, { status: 429 }, { status: 429 }];
    const before = proxy.count('tasks.list');
    expect(
      hiatusErrorCode(
        await client()
          .tasks.list.query({})
          .catch((e) => e),
      ),
    ).toBe('TOO_MANY_REQUESTS');
    expect(proxy.count('tasks.list') - before).toBe(3);

    proxy.plan = [{ status: 503 }];
    expect(
      hiatusErrorCode(
        await client(0)
          .tasks.list.query({})
          .catch((e) => e),
      ),
    ).toBe('SERVICE_UNAVAILABLE');
    proxy.plan = [];
  });

  it('waits as long as Retry-After says before trying again', async () => {
    proxy.plan = [{ status: 429, retryAfter: '1' }];
    const first = proxy.arrivals.length;
    await client().tasks.list.query({});
    const [refused, retried] = proxy.arrivals.slice(first);
    expect(retried!.at - refused!.at).toBeGreaterThanOrEqual(1000);
  });

  it('sends a mutation again only when the server cannot have acted on it', async () => {
    const create = (name: string, maxRetries?: number) =>
      client(maxRetries).tasks.create.mutate({ name, prompt: '', agentUrl: 'http://127.0.0.1:9', sendPrompt: false });

    // A 429 is a refusal before the call runs: sent again, and made once.
    proxy.plan = [{ status: 429, retryAfter: '0' }];
    await create('after-429');
    expect(await taskNamed('after-429')).toBe(1);

    // A 503 or a connection dropped after the request arrived may have been acted on: not sent again.
    for (const refusal of [{ status: 503 } as const, 'drop' as const]) {
      proxy.plan = [refusal];
      const before = proxy.count('tasks.create');
      const error = await create(`after-${typeof refusal === 'string' ? refusal : refusal.status}`).catch((e) => e);
      expect(error).toBeInstanceOf(Error);
      expect(proxy.count('tasks.create') - before).toBe(1);
    }
    proxy.plan = [];
  });
});
