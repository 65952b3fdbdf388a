import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One provisioner call the proxy holds: never answered (an acquire) or never forwarded (a complete). */
type HeldCall = { procedure: string; body: string };

/**
 * Which calls to hold: an acquire whose answer (already given by the server: the job is claimed)
 * `acquired` accepts, a complete whose request `completing` accepts. Each rule holds one call, then
 * is cleared; `held` resolves with it.
 */
type Hold = { match: (body: string) => boolean; found: (call: HeldCall) => void };

/**
 * An HTTP proxy between a daemon and the server that can stop a job's protocol at a chosen step:
 * after the server handed out a job and before the daemon read it, or after the daemon reported
 * it and before the server heard. What it holds it never delivers, so a daemon SIGKILLed then
 * has done exactly what the server saw, no more.
 */
export async function startJobProxy(target: string): Promise<{
  url: string;
  /** Holds the next acquire answer that `match` (its body text) accepts, and resolves with it. */
  holdAcquired(match: (body: string) => boolean): Promise<HeldCall>;
  /** Holds the next complete request that `match` (its body text) accepts, and resolves with it. */
  holdComplete(match: (body: string) => boolean): Promise<HeldCall>;
  close(): Promise<void>;
}> {
  const holds: Record<'acquire' | 'complete', Hold | undefined> = { acquire: undefined, complete: undefined };
  const holding = new Set<ServerResponse>();
  const hold = (kind: 'acquire' | 'complete', match: (body: string) => boolean) =>
    new Promise<HeldCall>((found) => {
      holds[kind] = { match, found };
    });
  /** The hold of `kind` if it takes `body` (cleared: it holds one call). */
  const take = (kind: 'acquire' | 'complete', body: string): Hold | undefined => {
    const rule = holds[kind];
    if (!rule?.match(body)) return undefined;
    holds[kind] = undefined;
    return rule;
  };

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readAll(req);
    const procedure = new URL(req.url ?? '/', 'http://proxy').pathname.replace(/^\/trpc\//, '');
    if (procedure === 'provisioner.complete') {
      const rule = take('complete', body);
      if (rule) {
        holding.add(res);
        rule.found({ procedure, body });
        return; // never forwarded
      }
    }
    const upstream = request(
      new URL(req.url ?? '/', target),
      { method: req.method, headers: req.headers },
      (answer) => {
        void (async () => {
          const text = await readAll(answer);
          const rule = procedure === 'provisioner.acquire' ? take('acquire', text) : undefined;
          if (rule) {
            holding.add(res);
            rule.found({ procedure, body: text });
            return; // never answered
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(text);
        })();
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    holdAcquired: (match) => hold('acquire', match),
    holdComplete: (match) => hold('complete', match),
    close: async () => {
      for (const res of holding) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function readAll(stream: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}
