// An agent whose port is taken before it can listen, the first time it starts (no $THIEF_MARKER
// yet): a process of its own, in a session of its own (a stop of the agent's group leaves it),
// takes $PORT, then the demo agent tries to listen there as any agent would, and exits. Later
// starts run the demo agent. The thief's pid is written to $THIEF_MARKER, for the test to end it.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';

const { PORT, THIEF_MARKER, DEMO_AGENT } = process.env;
if (!existsSync(THIEF_MARKER)) {
  const listen = `require('node:net').createServer().listen(${PORT}, '127.0.0.1', () => console.log('taken'))`;
  const thief = spawn(process.execPath, ['-e', listen], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => thief.stdout.once('data', resolve));
  writeFileSync(THIEF_MARKER, `${thief.pid}\n`);
  thief.stdout.destroy();
  thief.unref();
}
await import(DEMO_AGENT);
