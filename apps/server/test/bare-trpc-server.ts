// The floor under Hiatus's request path, for `pnpm bench:requests`: the `info` answer from a plain
// node:http handler, and from a bare tRPC router (one query, no transformer, no middleware, no
// context) through the same lean adapter and the same patched tRPC the server uses. Run as its own
// process so that its CPU per request can be read from /proc; prints its port on stdout.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { initTRPC } from '@trpc/server';
import { createNodeHandler } from '../src/trpc/node-adapter.ts';

const info = { service: 'hiatus', apiVersion: 1 };
const t = initTRPC.create();
const router = t.router({ info: t.procedure.query(() => info) });
const trpc = createNodeHandler({ router, basePath: '/trpc/', maxBodySize: 1 << 20, createContext: async () => ({}) });
const plain = JSON.stringify({ result: { data: info } });

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://bench');
  if (url.pathname.startsWith('/trpc/')) return void trpc(req, res, url);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(plain) });
  res.end(plain);
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
