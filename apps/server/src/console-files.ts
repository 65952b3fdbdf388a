import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `pnpm install` (or `pnpm --filter @hiatus/console build`) puts the built console. */
const defaultConsoleDir = fileURLToPath(new URL('../../console/dist', import.meta.url));

/** The paths the server answers itself: never the console's, even when nothing answers there. */
const serverPaths = ['/trpc', '/api', '/healthz', '/readyz', '/metrics', '/openapi.json'];

/** Whether `pathname` is the console's to answer (everything but the API and the probes). */
export function isConsolePath(pathname: string): boolean {
  return !serverPaths.some((p) => pathname === p || pathname.startsWith(`${p}/`));
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** What every answer of the console carries: no sniffing, no framing, scripts and calls to this origin only. */
const securityHeaders = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
};

/** Vite names built assets by their content's hash: such a file never changes, so it is cached for good. */
const immutable = 'public, max-age=31536000, immutable';

const notBuiltPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hiatus: the console is not built</title></head>
<body><main><h1>The web console is not built</h1>
<p>The API answers at <code>/trpc</code>; the console's files are missing from <code>apps/console/dist</code>.
Build them with <code>pnpm install</code> (which builds the console) or <code>pnpm --filter @hiatus/console build</code>,
then reload this page.</p></main></body></html>
`;

export type ConsoleFiles = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => Promise<void>;

/**
 * Serves the built console from `dir`: its files with their content types, `index.html` for any
 * other path without an extension (the console's own routes, such as `/tasks/<id>`), and a page
 * saying how to build it when it is not built. A path that decodes outside `dir` is refused.
 */
export function createConsoleFiles(dir: string = defaultConsoleDir): ConsoleFiles {
  const root = path.resolve(dir);
  return async (req, res, pathname) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendText(res, 405, 'the console answers GET and HEAD only');
    }
    const file = fileFor(root, pathname);
    if (file === null) return sendText(res, 400, 'not a path of the console');
    const found = await regularFile(file);
    if (found) {
      const cacheControl = pathname.startsWith('/assets/') ? immutable : 'no-cache';
      return sendFile(req, res, file, found.size, cacheControl);
    }
    // A missing asset is a 404; any other path is one of the console's routes.
    if (path.posix.extname(pathname) !== '') return sendText(res, 404, 'no such file');
    const index = path.join(root, 'index.html');
    const indexFound = await regularFile(index);
    if (!indexFound) return sendHtml(res, 503, notBuiltPage);
    return sendFile(req, res, index, indexFound.size, 'no-cache');
  };
}

/** The file a request path names inside `root`, or null when it is malformed or leads outside. */
function fileFor(root: string, pathname: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const file = path.resolve(root, `.${path.posix.normalize(`/${decoded}`)}`);
  return file === root || file.startsWith(`${root}${path.sep}`) ? file : null;
}

async function regularFile(file: string): Promise<{ size: number } | null> {
  try {
    const info = await stat(file);
    return info.isFile() ? { size: info.size } : null;
  } catch {
    return null;
  }
}

function sendFile(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  file: string,
  size: number,
  cacheControl: string,
): void {
  res.writeHead(200, {
    ...securityHeaders,
    'content-type': contentTypes[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': size,
    'cache-control': cacheControl,
  });
  if (req.method === 'HEAD') return void res.end();
  const stream = createReadStream(file);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    ...securityHeaders,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sendHtml(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    ...securityHeaders,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-cache',
  });
  res.end(html);
}
