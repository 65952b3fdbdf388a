#!/usr/bin/env node
// A stand-in for a real agent behind AgentAPI: it answers every user message after a short
// "work" period, so Hiatus can be tried and tested end to end without a model or an API key.
// It keeps its conversation in memory only: keeping it across a pause is Hiatus's job (snapshots).
//
// Env: PORT (required), HIATUS_PROMPT (the first user message, if any), DEMO_WORK_MS (default 300),
// DEMO_READY_MS (default 0: how long GET /status answers 503 "starting", for an agent slow to come up),
// DEMO_HOST (default 127.0.0.1: the address it listens on; 0.0.0.0 in a container, to be reached from outside).
// HIATUS_START=resume with HIATUS_PREVIOUS_CONVERSATION (a JSON file of the AgentAPI messages before
// the pause): a resumed agent does not start the task over; its first answer says what it was given.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('demo agent: PORT must be a TCP port number');
  process.exit(2);
}
const workMs = Number(process.env.DEMO_WORK_MS ?? 300);
// The port is taken at once even while "starting": a port left unbound for seconds can be taken by
// any outgoing connection's ephemeral port, and the agent would then fail to listen.
const readyAt = Date.now() + Number(process.env.DEMO_READY_MS ?? 0);

const messages = [];
let status = 'stable';

function addMessage(role, content) {
  messages.push({ id: messages.length, role, content, time: new Date().toISOString() });
}

/** Takes a user message, "works" on it for a while, then replies: the running → stable cycle Hiatus watches. */
function work(content) {
  addMessage('user', content);
  status = 'running';
  setTimeout(() => {
    addMessage('agent', `Done: "${content.slice(0, 60)}"`);
    status = 'stable';
  }, workMs);
}

function send(res, code, body, type = 'application/json') {
  res.writeHead(code, { 'content-type': type });
  res.end(JSON.stringify(body));
}

function problem(res, code, title, detail) {
  send(res, code, { title, status: code, detail }, 'application/problem+json');
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return JSON.parse(text);
}

async function postMessage(req, res) {
  let body;
  try {
    body = await readJson(req);
  } catch {
    return problem(res, 400, 'Bad Request', 'the body must be JSON');
  }
  if (typeof body?.content !== 'string' || (body.type !== 'user' && body.type !== 'raw')) {
    return problem(res, 422, 'Unprocessable Entity', 'expected {"content": string, "type": "user" | "raw"}');
  }
  if (body.type === 'raw') return send(res, 200, { ok: true });
  if (status !== 'stable') return problem(res, 409, 'Conflict', 'the agent is running: wait until it is stable');
  work(body.content);
  send(res, 200, { ok: true });
}

const server = createServer((req, res) => {
  const route = `${req.method} ${new URL(req.url ?? '/', 'http://agent').pathname}`;
  if (route === 'GET /status') {
    if (Date.now() < readyAt) return problem(res, 503, 'Service Unavailable', 'the agent is starting');
    return send(res, 200, { status, agent_type: 'demo' });
  }
  if (route === 'GET /messages') return send(res, 200, { messages });
  if (route === 'POST /message') {
    postMessage(req, res).catch((error) => problem(res, 500, 'Internal Server Error', String(error)));
    return;
  }
  problem(res, 404, 'Not Found', `no route for ${route}`);
});

/** The earlier conversation a resume was handed, or null when the file is missing or unreadable. */
function previousConversation() {
  const file = process.env.HIATUS_PREVIOUS_CONVERSATION;
  if (!file) return null;
  try {
    const messages = JSON.parse(readFileSync(file, 'utf8'));
    return Array.isArray(messages) ? messages : null;
  } catch (error) {
    console.error(`demo agent: cannot read the previous conversation ${file}: ${error.message}`);
    return null;
  }
}

if (process.env.HIATUS_START === 'resume') {
  // A real agent would restore this conversation (or continue over its kept workdir); the demo says what it got.
  const earlier = previousConversation();
  const last = earlier?.findLast((m) => m.role === 'user');
  addMessage(
    'agent',
    earlier
      ? `Resumed: I was given ${earlier.length} earlier messages${last ? ` (the last you sent: "${String(last.content).slice(0, 60)}")` : ''}.`
      : 'Resumed: I was given no earlier conversation.',
  );
} else if (process.env.HIATUS_PROMPT) {
  work(process.env.HIATUS_PROMPT);
}

const host = process.env.DEMO_HOST || '127.0.0.1';
server.listen(port, host, () => console.log(`demo agent listening on http://${host}:${port}`));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
