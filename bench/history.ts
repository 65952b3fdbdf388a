// A task's history across agent lifetimes (issue 24): the cost of a pause, and of a page of its log,
// with 1, 10 and 100 kept segments, all in one run on one server. The goal: both stay flat, since a
// pause writes only the segment it keeps (and drops) and a page reads only the pages that hold it.
// Alone: `pnpm bench:history` (figures printed and written to bench/results/history.json).
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { benchServerEnv, prose, quantile, seedTask, table, waitFor, withDatabase } from './support.ts';

/** Each agent lifetime says this many messages of this size (some 20 KB a segment). */
const messagesPerLifetime = 20;
const messageSize = 1_000;
/** Log pages read with each number of segments, then pauses timed (each keeping one more, each followed by a resume). */
const timedPauses = Number(process.env.BENCH_HISTORY_PAUSES ?? 8);
const pagesRead = Number(process.env.BENCH_HISTORY_PAGES ?? 200);
const pageSize = 20;
const segmentCounts = [1, 10, 100];

/** A new agent lifetime: the fake agent forgets its conversation and says a new one, as a fresh agent would. */
function newLifetime(agent: FakeAgent): void {
  agent.messages = [];
  agent.say(messagesPerLifetime, messageSize);
  for (const message of agent.messages) message.content = prose(messageSize);
}

/** Pauses and resumes the task: returns the pause call's milliseconds (its snapshot taken and stored). */
async function cycle(client: HiatusClient, agent: FakeAgent, taskId: string): Promise<number> {
  const started = performance.now();
  await client.tasks.pause.mutate({ id: taskId });
  const ms = performance.now() - started;
  await waitFor(client, taskId, 'paused');
  newLifetime(agent);
  await client.tasks.resume.mutate({ id: taskId });
  await waitFor(client, taskId, 'active');
  return ms;
}

const median = (values: number[]) =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
const round = (n: number) => Math.round(n * 100) / 100;

async function measure(client: HiatusClient, segments: number) {
  const agent = await new FakeAgent().start();
  try {
    newLifetime(agent);
    const task = await seedTask(client, agent.url, `history-${segments}`);
    // Every pause of a new agent keeps the previous snapshot as a segment: `segments` pauses leave
    // `segments` segments (the earlier lifetimes kept, and the latest snapshot).
    for (let i = 1; i < segments; i++) await cycle(client, agent, task.id);
    await client.tasks.pause.mutate({ id: task.id });
    await waitFor(client, task.id, 'paused');
    const counted = (await client.snapshots.segments.query({ taskId: task.id })).segments.length;
    // Pages anywhere in the history: a cursor drawn over all its positions.
    const total = counted * messagesPerLifetime;
    const pages: number[] = [];
    let seed = 7;
    for (let i = 0; i < pagesRead; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      const cursor = seed % Math.max(total - pageSize, 1);
      const started = performance.now();
      const page = await client.tasks.logs.query({ id: task.id, cursor, limit: pageSize });
      pages.push(performance.now() - started);
      if (page.entries.length === 0) throw new Error(`no entries after position ${cursor} of ${total}`);
    }
    // Then the pauses, each keeping one more segment.
    newLifetime(agent);
    await client.tasks.resume.mutate({ id: task.id });
    await waitFor(client, task.id, 'active');
    const pauses: number[] = [];
    for (let i = 0; i < timedPauses; i++) pauses.push(await cycle(client, agent, task.id));
    return {
      segments: counted,
      entries: total,
      'log page ms (median)': round(median(pages)),
      'log page ms (p99)': round(
        quantile(
          [...pages].sort((a, b) => a - b),
          0.99,
        ),
      ),
      'pause ms (median)': round(median(pauses)),
      'pause ms (max)': round(Math.max(...pauses)),
    };
  } finally {
    await agent.stop();
  }
}

export async function historyCosts(client: HiatusClient) {
  // A first task warms the server up (its JIT, its pools), unmeasured.
  await measure(client, 2);
  const rows = [];
  for (const segments of segmentCounts) rows.push(await measure(client, segments));
  const [one, , hundred] = rows;
  return {
    messagesPerLifetime,
    pageSize,
    rows,
    pauseRatio: round(hundred!['pause ms (median)'] / one!['pause ms (median)']),
    pageRatio: round(hundred!['log page ms (median)'] / one!['log page ms (median)']),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const token = `bench-${randomBytes(24).toString('hex')}`;
  await withDatabase(async (url) => {
    const server = await startServerProcess({ ...benchServerEnv(url, token), HIATUS_PROVISIONER_POLL_MS: '20' });
    try {
      const result = await historyCosts(createHiatusClient({ url: server.url, token }));
      table(
        `a pause and a log page (${pageSize} entries at a random position) against the kept segments (${messagesPerLifetime} messages of ${messageSize} characters each)`,
        result.rows,
      );
      console.log(
        `at the most segments ÷ at the fewest: pause ${result.pauseRatio}, log page ${result.pageRatio} (flat: about 1)`,
      );
      const out = path.join(import.meta.dirname, 'results', 'history.json');
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, `${JSON.stringify({ node: process.version, ...result }, null, 2)}\n`);
    } finally {
      await server.stop();
    }
  });
}
