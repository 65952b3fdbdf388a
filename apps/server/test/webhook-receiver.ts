import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got: the raw body (what a signature covers), the headers, the status answered (0: none). */
export type ReceivedWebhook = { rawBody: string; headers: http.IncomingHttpHeaders; at: number; status: number };

/**
 * A real HTTP endpoint on loopback that records every webhook it receives. `answers` is the
 * status of each next request in turn (then `status`); `hang` leaves requests unanswered.
 */
export class WebhookReceiver {
  received: ReceivedWebhook[] = [];
  /** The status answered once `answers` is used up. */
  status = 200;
  answers: number[] = [];
  hang = false;
  private server?: http.Server;
  private baseUrl?: string;
  private waiters: Array<() => void> = [];

  get url(): string {
    if (!this.baseUrl) throw new Error('the receiver is not started');
    return `${this.baseUrl}/hooks`;
  }

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const rawBody = Buffer.concat(chunks).toString('utf8');
        if (this.hang) {
          // Taken and never answered: status 0.
          this.received.push({ rawBody, headers: req.headers, at: Date.now(), status: 0 });
          return;
        }
        const status = this.answers.shift() ?? this.status;
        this.received.push({ rawBody, headers: req.headers, at: Date.now(), status });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'not now');
        for (const wake of this.waiters.splice(0)) wake();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The bodies answered with a 2xx, parsed. */
  delivered(): Array<{ id: string; type: string; taskId: string | null; payload: Record<string, unknown> }> {
    return this.received.filter((r) => r.status >= 200 && r.status < 300).map((r) => JSON.parse(r.rawBody));
  }

  /** Waits until `done()` holds, looking after each request (and every 200 ms); fails after `timeoutMs` (a hang's bound). */
  async until(done: () => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the receiver did not get what was expected within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
