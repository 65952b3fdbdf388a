// The first walk: run an agent under Hiatus, talk to it, pause it (its workspace really stops),
// read its log while it sleeps, resume it (a new process), and talk to it again.
//
//   HIATUS_TOKEN=<the admin key printed by `pnpm start`> pnpm demo
//
// It uses the `demo` template the server creates on first start (a small agent shipped with
// Hiatus that answers each message; no model needed) and the typed client, @hiatus/client.
import { createHiatusClient } from '../packages/client/src/index.ts';

const url = process.env.HIATUS_URL ?? 'http://127.0.0.1:8080';
const token = process.env.HIATUS_TOKEN;
if (!token) {
  console.error('Set HIATUS_TOKEN to an API key: `pnpm start` prints the first admin key.');
  process.exit(2);
}
const hiatus = createHiatusClient({ url, token });

async function until(id: string, status: string) {
  for (let i = 0; i < 300; i++) {
    const task = await hiatus.tasks.get.query({ id });
    if (task.status === status) return task;
    if (task.status === 'error') throw new Error(`the task failed: ${task.latestBuild?.error}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the task did not become ${status} within 30 s`);
}

/** The live log once the agent has answered the last message (and is ready for the next). */
async function lastWords(id: string) {
  for (let i = 0; i < 100; i++) {
    const log = await hiatus.tasks.logs.query({ id });
    if (log.source === 'live' && log.entries.at(-1)?.role === 'output') return log;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the agent did not answer');
}

const { task } = await hiatus.tasks.create.mutate({
  name: `demo-${Date.now()}`,
  prompt: 'Say hello',
  template: 'demo',
});
const started = await until(task.id, 'active');
console.log(`active: the agent answers at ${started.agentUrl}`);
await lastWords(task.id); // it works on the prompt first
await hiatus.tasks.send.mutate({ id: task.id, input: 'What are you working on?' });
console.log(`live log: ${(await lastWords(task.id)).entries.map((e) => `${e.role}: ${e.content}`).join(' | ')}`);

const paused = await hiatus.tasks.pause.mutate({ id: task.id });
await until(task.id, 'paused');
console.log(`paused: snapshot of ${paused.snapshot.taken ? paused.snapshot.messageCount : 0} messages; agent stopped`);
const sleeping = await hiatus.tasks.logs.query({ id: task.id });
console.log(`log while paused (${sleeping.source}): ${sleeping.entries.length} entries`);

await hiatus.tasks.resume.mutate({ id: task.id });
const resumed = await until(task.id, 'active');
console.log(`resumed: a new agent answers at ${resumed.agentUrl}`);
await lastWords(task.id);
await hiatus.tasks.send.mutate({ id: task.id, input: 'Welcome back' });
console.log(`live again: ${(await lastWords(task.id)).entries.at(-1)?.content}`);

await hiatus.tasks.delete.mutate({ id: task.id });
console.log('deleted: its workspace is gone');
