import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsoleFiles, isConsolePath } from './console-files.ts';

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };

/** A request with its path sent exactly as written (fetch would normalize `..` and `%2e%2e` away). */
function rawRequest(base: string, rawPath: string, method = 'GET'): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: rawPath, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A real HTTP server on loopback answering every path with the console's files from `dir`. */
async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const files = createConsoleFiles(dir);
  const server = http.createServer((req, res) => {
    void files(req, res, new URL(req.url ?? '/', 'http://localhost').pathname);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('the console files', () => {
  let top: string;
  let site: { url: string; close(): Promise<void> };
  const index = '<!doctype html><title>console</title>';
  const script = 'console.log("hashed")';

  beforeAll(async () => {
    top = await mkdtemp(path.join(os.tmpdir(), 'hiatus-console-'));
    await mkdir(path.join(top, 'dist', 'assets'), { recursive: true });
    await writeFile(path.join(top, 'dist', 'index.html'), index);
    await writeFile(path.join(top, 'dist', 'assets', 'index-AbC123.js'), script);
    await writeFile(path.join(top, 'dist', 'assets', 'index-AbC123.css'), 'body{}');
    // Beside the served folder: what a path traversal would reach.
    await writeFile(path.join(top, 'secret.txt'), 'the secret');
    await writeFile(path.join(top, 'dist-secret.txt'), 'the other secret');
    site = await serve(path.join(top, 'dist'));
  });
  afterAll(async () => {
    await site?.close();
    await rm(top, { recursive: true, force: true });
  });

  it('serves index.html at / and at every route of the console, never cached', async () => {
    for (const route of ['/', '/tasks/0b4f2c1e-1111-4a4a-8888-123456789abc', '/audit', '/telemetry?x=1']) {
      const answer = await rawRequest(site.url, route);
      expect(answer.status, route).toBe(200);
      expect(answer.body).toBe(index);
      expect(answer.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(answer.headers['cache-control']).toBe('no-cache');
      expect(answer.headers['content-security-policy']).toContain("default-src 'self'");
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('serves hashed assets with their content type, cached for good', async () => {
    const js = await rawRequest(site.url, '/assets/index-AbC123.js');
    expect(js.status).toBe(200);
    expect(js.body).toBe(script);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['content-length']).toBe(String(Buffer.byteLength(script)));
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    const css = await rawRequest(site.url, '/assets/index-AbC123.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const head = await rawRequest(site.url, '/assets/index-AbC123.js', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(script)));
    expect(head.body).toBe('');
  });

  it('answers 404 for a missing file (a path with an extension), not the page', async () => {
    for (const missing of ['/assets/index-gone.js', '/favicon.ico', '/index.html.bak']) {
      const answer = await rawRequest(site.url, missing);
      expect(answer.status, missing).toBe(404);
      expect(answer.body).not.toBe(index);
    }
  });

  it('never serves a file outside its folder, however the path is spelled', async () => {
    const attempts = [
      '/../secret.txt',
      '/%2e%2e/secret.txt',
      '/..%2fsecret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/..%5csecret.txt',
      '/../dist-secret.txt',
      '/..%2fdist-secret.txt',
      '/assets%00.js',
    ];
    for (const attempt of attempts) {
      // As the server's own handler sees it: the WHATWG URL parser's path, then the console's decoding.
      const answer = await rawRequest(site.url, attempt);
      expect(answer.body, attempt).not.toContain('secret');
      expect([200, 400, 404], attempt).toContain(answer.status);
      if (answer.status === 200) expect(answer.body).toBe(index);
    }
    expect((await rawRequest(site.url, '/..%2fsecret.txt')).status).toBe(404);
    expect((await rawRequest(site.url, '/..%5csecret.txt')).status).toBe(400);
  });

  it('refuses a malformed path and methods other than GET and HEAD', async () => {
    expect((await rawRequest(site.url, '/%E0%A4%A')).status).toBe(400);
    const post = await rawRequest(site.url, '/', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('says how to build the console when it is not built', async () => {
    const empty = await serve(path.join(top, 'not-built'));
    try {
      const answer = await rawRequest(empty.url, '/tasks/1');
      expect(answer.status).toBe(503);
      expect(answer.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(answer.body).toContain('pnpm --filter @hiatus/console build');
    } finally {
      await empty.close();
    }
  });

  it('leaves the API and the probes to the server', () => {
    for (const p of ['/trpc', '/trpc/tasks.list', '/api/v1/tasks', '/api', '/healthz', '/readyz', '/metrics']) {
      expect(isConsolePath(p), p).toBe(false);
    }
    expect(isConsolePath('/openapi.json')).toBe(false);
    for (const p of ['/', '/tasks/1', '/audit', '/apis', '/trpcx', '/assets/index-1.js']) {
      expect(isConsolePath(p), p).toBe(true);
    }
  });
});
