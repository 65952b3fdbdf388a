import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentMessage } from '../src/agentapi/schema.ts';

/** How the fake agent answers `GET /messages` (and `/status`). */
export type FakeAgentMode = 'ok' | 'hang' | 'error500' | 'garbage' | 'wrong-shape' | 'close-midway' | 'huge';

/**
 * A real AgentAPI-speaking HTTP server on loopback, with a conversation the test controls and
 * switches for the ways a real agent goes wrong.
 */
export class FakeAgent {
  messages: AgentMessage[] = [];
  status: 'running' | 'stable' = 'stable';
  mode: FakeAgentMode = 'ok';
  /** Messages received through `POST /message`. */
  received: string[] = [];
  /** How many times `GET /messages` was asked for (whatever the mode). */
  historyReads = 0;
  /** How many `POST /message` requests have arrived (whatever became of them). */
  postsArrived = 0;
  /** While set, `POST /message` waits for it before taking the message: a delivery held in flight. */
  postGate?: Promise<void>;
  private server?: http.Server;
  private baseUrl?: string;

  /** The agent's base URL; it stays the same after stop(), where nothing answers. */
  get url(): string {
    if (!this.baseUrl) throw new Error('the fake agent is not started');
    return this.baseUrl;
  }

  /** Appends `count` messages, alternating user and agent, each `size` characters long. */
  say(count: number, size = 40): this {
    for (let i = 0; i < count; i++) {
      const id = this.messages.length;
      this.messages.push({
        id,
        role: id % 2 === 0 ? 'user' : 'agent',
        content: `message ${id} `.padEnd(size, 'x'),
        time: new Date(Date.UTC(2026, 5, 3, 13, 0, id)).toISOString(),
      });
    }
    return this;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): unknown {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET' && path === '/messages') this.historyReads++;
    if (this.mode === 'hang') return; // never answers
    if (this.mode === 'error500')
      return this.json(res, 500, { title: 'Internal Server Error', status: 500, detail: 'boom' });
    if (this.mode === 'close-midway') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      // Cut once the first half has left: the client has seen a body begin, then lose its connection.
      res.write('{"messages": [{"id": 0,', () => res.destroy());
      return;
    }
    if (this.mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"messages": [ this is not json');
    }
    if (this.mode === 'wrong-shape')
      return this.json(res, 200, { messages: [{ id: 'one', role: 'robot' }], status: 9 });
    if (req.method === 'GET' && path === '/messages') {
      if (this.mode === 'huge') {
        // A body that never ends: the client must stop reading at its limit.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"messages": [');
        const chunk = `${JSON.stringify({ id: 0, role: 'agent', content: 'x'.repeat(64 * 1024), time: new Date().toISOString() })},`;
        const pump = () => {
          while (res.write(chunk)) {
            if (res.destroyed) return;
          }
          res.once('drain', pump);
        };
        res.on('close', () => res.removeAllListeners('drain'));
        return pump();
      }
      return this.json(res, 200, { messages: this.messages });
    }
    if (req.method === 'GET' && path === '/status')
      return this.json(res, 200, { status: this.status, agent_type: 'claude' });
    if (req.method === 'POST' && path === '/message') {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', async () => {
        this.postsArrived++;
        if (this.postGate) await this.postGate;
        const { content, type } = JSON.parse(body) as { content: string; type: string };
        if (type === 'user' && this.status !== 'stable') {
          return this.json(res, 400, { title: 'Bad Request', status: 400, detail: 'agent is running' });
        }
        this.received.push(content);
        if (type === 'user') {
          this.messages.push({ id: this.messages.length, role: 'user', content, time: new Date().toISOString() });
        }
        this.json(res, 200, { ok: true });
      });
      return;
    }
    this.json(res, 404, { title: 'Not Found', status: 404, detail: `no route ${req.method} ${path}` });
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const payload = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
    res.end(payload);
  }
}
