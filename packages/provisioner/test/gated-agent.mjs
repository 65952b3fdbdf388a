// An agent that comes up when the test says so: it listens on $PORT at once and answers
// GET /status 503 until the file $GATE_DIR/$HIATUS_TASK_ID exists, then 200 (stable). Until the
// test opens that gate, a start of it is certainly still running, however slow the machine.
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const gate = join(process.env.GATE_DIR, process.env.HIATUS_TASK_ID);

function send(res, code, body) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

createServer((req, res) => {
  const route = `${req.method} ${new URL(req.url ?? '/', 'http://agent').pathname}`;
  if (route === 'GET /status') {
    if (!existsSync(gate)) return send(res, 503, { title: 'Service Unavailable', status: 503, detail: 'gated' });
    return send(res, 200, { status: 'stable', agent_type: 'gated' });
  }
  if (route === 'GET /messages') return send(res, 200, { messages: [] });
  send(res, 404, { title: 'Not Found', status: 404, detail: `no route for ${route}` });
}).listen(Number(process.env.PORT), '127.0.0.1');
