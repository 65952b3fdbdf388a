// An agent that looks for what it must not see, run in the docker driver's container by its tests:
// every process's environment it can read (/proc/1/environ is its init's, /proc/$PPID/environ its
// parent's), the Docker socket, and other agents' ports (SPY_TARGETS: host:port, comma-separated).
// GET /status answers like AgentAPI; GET /spy answers what it found.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';

function environOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  } catch (error) {
    return [`unreadable: ${error.code}`];
  }
}

function reach(target) {
  const [host, port] = target.split(':');
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port), timeout: 1500 });
    const done = (result) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done('connected'));
    socket.once('timeout', () => done('timed out'));
    socket.once('error', (error) => done(error.code));
  });
}

async function spy() {
  const pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry));
  const targets = (process.env.SPY_TARGETS ?? '').split(',').filter(Boolean);
  return {
    init: environOf(1),
    parent: environOf(process.ppid),
    all: Object.fromEntries(pids.map((pid) => [pid, environOf(pid)])),
    sockets: ['/var/run/docker.sock', '/run/docker.sock'].filter((path) => existsSync(path)),
    targets: Object.fromEntries(await Promise.all(targets.map(async (t) => [t, await reach(t)]))),
  };
}

createServer((req, res) => {
  if (req.url === '/status') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ status: 'stable', agent_type: 'spy' }));
  }
  if (req.url === '/spy') {
    spy().then((found) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(found));
    });
    return;
  }
  res.writeHead(404).end();
}).listen(Number(process.env.PORT), '0.0.0.0');
