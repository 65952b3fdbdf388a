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
/** Log pages read of each task, then pauses timed (each after a resume with a new agent, so each keeps one more segment). */
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

type Subject = { segments: number; agent: FakeAgent; taskId: string; total: number; pages: number[]; pauses: number[] };

/** A paused task whose history holds `segments` segments: every pause of a new agent keeps the previous snapshot as one. */
async function prepare(client: HiatusClient, segments: number): Promise<Subject> {
  const agent = await new FakeAgent().start();
  newLifetime(agent);
  const { id: taskId } = await seedTask(client, agent.url, `history-${segments}`);
  for (let i = 0; i < segments; i++) {
    if (i > 0) {
      newLifetime(agent);
      await client.tasks.resume.mutate({ id: taskId });
      await waitFor(client, taskId, 'active');
    }
    await client.tasks.pause.mutate({ id: taskId });
    await waitFor(client, taskId, 'paused');
  }
  const counted = (await client.snapshots.segments.query({ taskId })).segments.length;
  if (counted !== segments) throw new Error(`task holds ${counted} segments, not ${segments}`);
  return { segments, agent, taskId, total: segments * messagesPerLifetime, pages: [], pauses: [] };
}

/** Reads one page at a random position of the subject's history; its milliseconds. */
async function readPage(client: HiatusClient, subject: Subject, seed: number): Promise<number> {
  const cursor = seed % Math.max(subject.total - pageSize, 1);
  const started = performance.now();
  const page = await client.tasks.logs.query({ id: subject.taskId, cursor, limit: pageSize });
  const ms = performance.now() - started;
  if (page.entries.length === 0) throw new Error(`no entries after position ${cursor} of ${subject.total}`);
  return ms;
}

/** Resumes the subject with a new agent, then pauses it: the pause call's milliseconds (its snapshot taken, one more segment kept). */
async function timePause(client: HiatusClient, subject: Subject): Promise<number> {
  newLifetime(subject.agent);
  await client.tasks.resume.mutate({ id: subject.taskId });
  await waitFor(client, subject.taskId, 'active');
  const started = performance.now();
  await client.tasks.pause.mutate({ id: subject.taskId });
  const ms = performance.now() - started;
  await waitFor(client, subject.taskId, 'paused');
  return ms;
}

const median = (values: number[]) =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
const round = (n: number) => Math.round(n * 100) / 100;

export async function historyCosts(client: HiatusClient) {
  // A first task warms the server up (its JIT, its pools), unmeasured.
  const warm = await prepare(client, 3);
  for (let i = 0; i < 20; i++) await readPage(client, warm, i * 7);
  await warm.agent.stop();
  const subjects: Subject[] = [];
  for (const segments of segmentCounts) subjects.push(await prepare(client, segments));
  try {
    // Interleaved, one page (then one pause) of each in turn, so that whatever else the machine
    // does weighs on all three alike.
    let seed = 7;
    for (let i = 0; i < pagesRead; i++) {
      for (const subject of subjects) {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        subject.pages.push(await readPage(client, subject, seed));
      }
    }
    for (let i = 0; i < timedPauses; i++) {
      for (const subject of subjects) subject.pauses.push(await timePause(client, subject));
    }
  } finally {
    await Promise.all(subjects.map((s) => s.agent.stop()));
  }
  const rows = subjects.map((s) => ({
    segments: s.segments,
    entries: s.total,
    'log page ms (median)': round(median(s.pages)),
    'log page ms (p99)': round(
      quantile(
        [...s.pages].sort((a, b) => a - b),
        0.99,
      ),
    ),
    'pause ms (median)': round(median(s.pauses)),
    'pause ms (max)': round(Math.max(...s.pauses)),
  }));
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
