// Log pages of a paused task: pages/s reading a 1 MiB snapshot page by page, and the same with the
// largest snapshot allowed (32 MiB by default), in one run; the goal is a cost per page that does
// not grow with the snapshot (ratio ≥ 0.8). Part of `pnpm bench`; alone: `pnpm bench:logs`.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { defaults } from '../apps/server/src/defaults.ts';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { type ServerProcess, startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { prose, rssKiB, seedTask, table, waitFor, withDatabase } from './support.ts';

const pageSize = 100;
const messageSize = 4_000;
/** Pages read of each snapshot (from the start again at its end), so that both runs last long enough. */
const pagesToRead = Number(process.env.BENCH_LOG_PAGES ?? 400);

/** Pauses a task whose agent holds `historyBytes` of messages, then reads its log from the snapshot. */
async function readPaused(server: ServerProcess, client: HiatusClient, historyBytes: number, label: string) {
  const agent = await new FakeAgent().start();
  try {
    agent.say(Math.floor(historyBytes / (messageSize + 100)), messageSize);
    // Text that compresses about as an agent's prose does (some 2:1), not padding that vanishes.
    for (const message of agent.messages) message.content = prose(messageSize);
    const task = await seedTask(client, agent.url, `logs-${label}`);
    const paused = await client.tasks.pause.mutate({ id: task.id });
    await waitFor(client, task.id, 'paused');
    const before = await rssKiB(server.pid);
    let pages = 0;
    const started = performance.now();
    let cursor: number | undefined;
    while (pages < pagesToRead) {
      const page = await client.tasks.logs.query({ id: task.id, cursor, limit: pageSize });
      if (page.source !== 'snapshot') throw new Error('the log did not come from the snapshot');
      pages++;
      cursor = page.nextCursor ?? undefined;
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      snapshot: label,
      'stored MiB': paused.snapshot.taken ? Math.round((paused.snapshot.bytes / 2 ** 20) * 10) / 10 : 0,
      pages,
      'pages/s': Math.round(pages / seconds),
      'ms a page': Math.round(((seconds * 1000) / pages) * 100) / 100,
      'server RSS growth MiB': Math.round(((await rssKiB(server.pid)).rss - before.rss) / 1024),
    };
  } finally {
    await agent.stop();
  }
}

export async function logPages(server: ServerProcess, client: HiatusClient) {
  // Under the cap, with room for the answer's envelope.
  const largest = Math.floor(defaults.maxSnapshotBytes * 0.97);
  const small = await readPaused(server, client, 2 ** 20, '1 MiB');
  const large = await readPaused(server, client, largest, `${Math.round(defaults.maxSnapshotBytes / 2 ** 20)} MiB`);
  return { pageSize, rows: [small, large], ratio: Math.round((large['pages/s'] / small['pages/s']) * 100) / 100 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const token = `bench-${randomBytes(24).toString('hex')}`;
  await withDatabase(async (url) => {
    const server = await startServerProcess({
      DATABASE_URL: url,
      HIATUS_ADMIN_TOKEN: token,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_RATE_LIMIT_PER_SECOND: '0',
      HIATUS_HEAVY_READ_MS_PER_SECOND: '0',
    });
    try {
      const result = await logPages(server, createHiatusClient({ url: server.url, token }));
      table(`tasks.logs of a paused task, page by page (${pageSize} messages a page)`, result.rows);
      console.log(`pages/s at ${result.rows[1]!.snapshot} ÷ pages/s at 1 MiB: ${result.ratio}`);
      const out = path.join(import.meta.dirname, 'results', 'log-pages.json');
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    } finally {
      await server.stop();
    }
  });
}
