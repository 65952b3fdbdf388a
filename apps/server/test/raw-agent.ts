import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An agent on loopback that answers `GET /messages` with exactly the bytes a test gives it, and
 * `GET /status` with `stable`: for answers the fake agent could not produce by serializing a
 * value (nesting deeper than JSON.stringify goes, invalid UTF-8).
 */
export class RawAgent {
  private server?: http.Server;
  private baseUrl?: string;

  constructor(public messagesBody: Buffer | string) {}

  get url(): string {
    if (!this.baseUrl) throw new Error('the raw agent is not started');
    return this.baseUrl;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const body = path === '/messages' ? this.messagesBody : path === '/status' ? '{"status":"stable"}' : '{}';
      res.writeHead(path === '/messages' || path === '/status' ? 200 : 404, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** `{"a":{"a":…1…}}`, `levels` objects deep. */
export function nestedJson(levels: number): string {
  return `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
}

/** One AgentAPI message as JSON text, with `extra` spliced in verbatim as further fields. */
export function messageJson(id: number | string, extra = '', content = `message ${id}`): string {
  const time = new Date(Date.UTC(2026, 5, 3, 13, 0, 0)).toISOString();
  return `{"id":${id},"role":"agent","content":${JSON.stringify(content)},"time":"${time}"${extra ? `,${extra}` : ''}}`;
}

/** A `GET /messages` answer holding `messages` (JSON texts). */
export function messagesJson(messages: string[]): string {
  return `{"messages":[${messages.join(',')}]}`;
}
