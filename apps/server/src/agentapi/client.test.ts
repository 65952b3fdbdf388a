import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createOutboundDispatcher } from '../net/outbound-dispatcher.ts';
import { OutboundAddressPolicy, parseAllowance, type Resolver } from '../net/url-policy.ts';
import { AgentClient, AgentError } from './client.ts';

const loopback = new OutboundAddressPolicy(parseAllowance(['127.0.0.0/8', '::1/128']));
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

/** A loopback HTTP server answering with `handle`; it records the paths asked for. */
async function serve(handle: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? '');
    handle(req, res);
  });
  return { ...(await listen(server)), paths };
}

/** A loopback TCP server that answers every connection with `reply` (not HTTP). */
async function raw(reply: (socket: net.Socket) => void) {
  return listen(net.createServer(reply));
}

async function listen(server: net.Server) {
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => sockets.add(socket.on('close', () => sockets.delete(socket))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const handle = {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  opened.push(handle);
  return handle;
}

function client(url: string | null, policy: OutboundAddressPolicy | null = loopback, timeoutMs = 2_000): AgentClient {
  const dispatcher = createOutboundDispatcher(policy, { connectTimeoutMs: timeoutMs });
  return new AgentClient(url, { timeoutMs, maxBytes: 1024 * 1024, dispatcher });
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function failure(call: Promise<unknown>): Promise<AgentError> {
  const error = await call.then(
    () => expect.unreachable('the call succeeded'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AgentError);
  return error as AgentError;
}

describe('the AgentAPI client', () => {
  it('keeps the path of the agent URL, with or without its trailing slash, and its query', async () => {
    const agent = await serve((req, res) =>
      req.url?.includes('/status') ? json(res, 200, { status: 'stable' }) : json(res, 200, { messages: [], ok: true }),
    );
    await client(`${agent.url}/agents/7`).messages();
    await client(`${agent.url}/agents/7/`).status();
    await client(`${agent.url}/agents/7?key=k`).sendMessage('hi');
    await client(agent.url).status();
    expect(agent.paths).toEqual(['/agents/7/messages', '/agents/7/status', '/agents/7/message?key=k', '/status']);
  });

  it('follows no redirect: a 302 is an answer of status 302', async () => {
    const elsewhere = await serve((_req, res) => json(res, 200, { messages: [] }));
    const agent = await serve((_req, res) => {
      res.writeHead(302, { location: `${elsewhere.url}/messages` });
      res.end();
    });
    const error = await failure(client(agent.url).messages());
    expect(error).toMatchObject({ failure: 'bad_response', message: 'the agent answered status 302' });
    expect(elsewhere.paths).toEqual([]);
  });

  it('never repeats what the agent answered, not even a problem document', async () => {
    const secret = 'AKIA-SECRET-0123456789';
    const agent = await serve((req, res) =>
      req.url === '/messages'
        ? json(res, 500, { title: 'oops', detail: secret })
        : req.url === '/status'
          ? json(res, 404, { detail: secret })
          : json(res, 200, { messages: [{ id: 0, role: secret, content: secret, time: secret }], [secret]: 1 }),
    );
    const errors = [
      await failure(client(agent.url).messages()),
      await failure(client(agent.url).status()),
      await failure(client(`${agent.url}/shape`).messages()),
    ];
    expect(errors.map((e) => e.message)).toEqual([
      'the agent answered status 500',
      'the agent answered status 404',
      expect.stringMatching(/^the agent's answer is not AgentAPI's \(messages\.0\.role: /),
    ]);
    for (const error of errors) expect(error.message).not.toContain(secret);
  });

  it('says a closed port, a reset, a port that does not speak HTTP, and a failed TLS handshake in the same words', async () => {
    const closed = await raw(() => undefined);
    await closed.close(); // nothing listens there any more
    const reset = await raw((socket) => socket.resetAndDestroy());
    const garbage = await raw((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n'));
    const plain = await serve((_req, res) => json(res, 200, { status: 'stable' }));
    const urls = [closed.url, reset.url, garbage.url, plain.url.replace('http:', 'https:')];
    const messages = await Promise.all(urls.map(async (url) => (await failure(client(url).status())).message));
    expect(messages).toEqual(Array(urls.length).fill('the agent is unreachable'));
  });

  it('says a host that does not resolve in the same words', async () => {
    const resolve: Resolver = async (host) => {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    };
    const policy = new OutboundAddressPolicy(parseAllowance(['nowhere.example']), { resolve });
    const error = await failure(client('http://nowhere.example:3284', policy).status());
    expect(error).toMatchObject({ failure: 'unreachable', message: 'the agent is unreachable' });
  });

  it('says a timeout, and an answer too large, in its own words', async () => {
    const silent = await serve(() => undefined);
    expect((await failure(client(silent.url, loopback, 200).status())).message).toBe(
      'the agent did not answer within 200 ms',
    );
    const big = await serve((_req, res) => json(res, 200, { messages: [], pad: 'x'.repeat(2 * 1024 * 1024) }));
    expect(await failure(client(big.url).messages())).toMatchObject({
      failure: 'too_large',
      message: "the agent's answer is larger than 1048576 bytes",
    });
  });

  it('refuses a refused address before connecting, whatever its spelling', async () => {
    const agent = await serve((_req, res) => json(res, 200, { status: 'stable' }));
    const strict = new OutboundAddressPolicy(parseAllowance([]));
    for (const url of [agent.url, `http://0x7f.1:${agent.port}`, `http://[::ffff:127.0.0.1]:${agent.port}`]) {
      const error = await failure(client(url, strict).status());
      expect(error).toMatchObject({ failure: 'not_allowed' });
      expect(error.message).toMatch(/^the agent's address is not allowed: .* is a loopback address/);
    }
    expect(agent.paths).toEqual([]);
  });

  it('checks the address a name resolves to when it connects, and connects to that address (no DNS rebinding)', async () => {
    const agent = await serve((_req, res) => json(res, 200, { status: 'stable' }));
    // The name was public when the task was created; by the time Hiatus connects it points at loopback.
    let answer = '93.184.216.34';
    const resolve: Resolver = async () => [{ address: answer, family: 4 }];
    const strict = new OutboundAddressPolicy(parseAllowance([]), { resolve });
    const url = `http://rebind.example:${agent.port}`;
    expect(await strict.refusalForUrl(url)).toBeNull();
    answer = '127.0.0.1';
    const error = await failure(client(url, strict).status());
    expect(error).toMatchObject({
      failure: 'not_allowed',
      message:
        "the agent's address is not allowed: rebind.example resolves to a loopback address (HIATUS_ALLOWED_AGENT_NETWORKS can allow it)",
    });
    expect(agent.paths).toEqual([]);

    // Allowed by name, the connection goes to the address the check saw.
    const named = new OutboundAddressPolicy(parseAllowance(['rebind.example']), { resolve });
    expect(await client(url, named).status()).toBe('stable');
    expect(agent.paths).toEqual(['/status']);
  });

  it('trusts any address without a policy (an agent a template driver started), still without redirects', async () => {
    const agent = await serve((req, res) => {
      if (req.url === '/status') return json(res, 200, { status: 'running' });
      res.writeHead(301, { location: '/status' });
      res.end();
    });
    expect(await client(agent.url, null).status()).toBe('running');
    expect((await failure(client(agent.url, null).messages())).message).toBe('the agent answered status 301');
  });

  it('refuses a URL with credentials before anything is sent', async () => {
    const agent = await serve((_req, res) => json(res, 200, { status: 'stable' }));
    const error = await failure(client(agent.url.replace('//', '//user:pw@'), null).status());
    expect(error.failure).toBe('not_allowed');
    expect(agent.paths).toEqual([]);
  });
});
