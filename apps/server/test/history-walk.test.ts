import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { repoRoot } from '../src/config.ts';
import type { LogPage } from '../src/lifecycle/logs.ts';
import { apiClient } from './api-client.ts';
import { testBackends } from './databases.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const words = ['BRAVO', 'CHARLIE', 'DELTA', 'ECHO', 'FOXTROT', 'GOLF', 'HOTEL', 'INDIA', 'JULIETT', 'KILO'];
const notice = 'Save your work: this task will pause.';

// The walk: a demo task sent a message, paused and resumed ten times. Every resume starts a
// new demo agent that remembers nothing; the task's log must still hold every cycle, in order.
describe('a demo task paused and resumed ten times keeps its whole history', () => {
  let running: TestServer;
  let dataDir: string;
  let api: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'hiatus-history-'));
    running = await startTestServer(testBackends()[0]!, {
      HIATUS_PROVISIONER_DIR: path.join(dataDir, 'provisioner'),
      HIATUS_PROVISIONER_POLL_MS: '100',
    });
    api = apiClient(running.server.url, running.adminToken);
  }, 120_000);

  afterAll(async () => {
    await running?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Every page of the task's log, `limit` entries at a time. */
  const readAll = async (id: string, limit: number): Promise<LogPage[]> => {
    const pages: LogPage[] = [];
    let cursor: number | undefined;
    do {
      const page = await api.tasks.logs.query({ id, cursor, limit });
      pages.push(page);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    return pages;
  };
  const contents = async (id: string) => (await readAll(id, 100)).flatMap((p) => p.entries.map((e) => e.content));
  const waitFor = (check: () => Promise<boolean>, what: string) =>
    vi.waitFor(
      async () => {
        if (!(await check())) throw new Error(`not yet: ${what}`);
      },
      { timeout: 60_000, interval: 100 },
    );

  it('in the log (tRPC and REST) and the CLI, with the boundaries between agents', async () => {
    const { task } = await api.tasks.create.mutate({ name: 'ten-cycles', prompt: 'Say hello', template: 'demo' });
    const id = task.id;
    await waitFor(async () => (await api.tasks.get.query({ id })).status === 'active', 'the first agent answers');

    for (const [i, word] of words.entries()) {
      if (i > 0) {
        const resumed = await api.tasks.resume.mutate({ id, wait: true, waitMs: 60_000 });
        expect(resumed).toMatchObject({ settled: true, task: { status: 'active' } });
      }
      await api.tasks.send.mutate({ id, input: `message ${word}` });
      await waitFor(async () => (await contents(id)).includes(`Done: "message ${word}"`), `the answer to ${word}`);
      const paused = await api.tasks.pause.mutate({ id, wait: true, waitMs: 60_000 });
      expect(paused).toMatchObject({ settled: true, task: { status: 'paused' }, snapshot: { taken: true } });
    }

    // Read in pages of 4: the boundaries between agents fall inside pages and between them.
    const pages = await readAll(id, 4);
    const entries = pages.flatMap((p) => p.entries);
    expect(entries.map((e) => e.position)).toEqual(entries.map((_, i) => i));
    expect([...new Set(entries.map((e) => e.segment))]).toEqual(words.map((_, i) => i + 1));
    for (const [i, word] of words.entries()) {
      const own = entries.filter((e) => e.segment === i + 1).map((e) => e.content);
      // Each agent's cycle, in order: the message, its answer, the pre-pause notice and its answer.
      const at = (content: string) => own.indexOf(content);
      expect(at(`message ${word}`), word).toBeGreaterThanOrEqual(0);
      expect(at(`Done: "message ${word}"`), word).toBeGreaterThan(at(`message ${word}`));
      expect(at(notice), word).toBeGreaterThan(at(`Done: "message ${word}"`));
      expect(at(`Done: "${notice}"`), word).toBeGreaterThan(at(notice));
    }
    const all = entries.map((e) => e.content);
    expect(words.map((word) => all.indexOf(`message ${word}`))).toEqual(
      words.map((word) => all.indexOf(`message ${word}`)).sort((a, b) => a - b),
    );
    expect(all.filter((c) => c === notice)).toHaveLength(10);
    // Each page says when its agents were paused and started: the boundaries, in time order.
    const segments = new Map(pages.flatMap((p) => p.segments).map((s) => [s.segment, s]));
    expect([...segments.keys()].sort((a, b) => a - b)).toEqual(words.map((_, i) => i + 1));
    for (let k = 1; k < words.length; k++) {
      expect(segments.get(k)!.pausedAt!.getTime()).toBeLessThanOrEqual(segments.get(k + 1)!.startedAt!.getTime());
    }
    expect(segments.get(10)).toMatchObject({ source: 'snapshot' });

    // snapshots.get still answers the latest snapshot alone, as the seed defines it.
    const latest = await api.snapshots.get.query({ taskId: id });
    expect(latest.messages.map((m) => m.content)).toContain('message KILO');
    expect(latest.messages.map((m) => m.content)).not.toContain('message BRAVO');
    const listed = await api.snapshots.segments.query({ taskId: id });
    expect(listed.segments.map((s) => [s.segment, s.source])).toEqual(
      words.map((_, i) => [i + 1, i < 9 ? 'kept' : 'snapshot']),
    );

    // REST: the same pages, the cursor a position.
    const rest = async (query: string) => {
      const response = await fetch(`${running.server.url}/api/v1/tasks/${id}/logs?${query}`, {
        headers: { authorization: `Bearer ${running.adminToken}` },
      });
      expect(response.status).toBe(200);
      return (await response.json()) as { entries: Array<{ position: number; segment: number; content: string }> };
    };
    const boundary = entries.findIndex((e) => e.segment === 2);
    const across = await rest(`cursor=${boundary - 2}&limit=3`);
    expect(across.entries.map((e) => [e.position, e.segment])).toEqual([
      [boundary - 1, 1],
      [boundary, 2],
      [boundary + 1, 2],
    ]);

    // The CLI prints a line at each boundary.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'packages/cli/src/main.ts'), 'tasks', 'logs', id, '--page-size', '7'],
      {
        cwd: repoRoot,
        env: { ...process.env, HIATUS_URL: running.server.url, HIATUS_TOKEN: running.adminToken },
        timeout: 60_000,
      },
    );
    const lines = stdout.trimEnd().split('\n');
    const boundaries = lines.filter((line) => / with a new agent \(segment \d+\) --$/.test(line));
    expect(boundaries).toHaveLength(9);
    expect(boundaries[0]).toMatch(/^-- paused at .+; resumed at .+ with a new agent \(segment 2\) --$/);
    expect(lines.findIndex((line) => line.endsWith('input: message BRAVO'))).toBeLessThan(
      lines.indexOf(boundaries[0]!),
    );
    expect(lines.findIndex((line) => line.endsWith('input: message CHARLIE'))).toBeGreaterThan(
      lines.indexOf(boundaries[0]!),
    );

    // Resumed once more: the live agent's entries come after all ten.
    await api.tasks.resume.mutate({ id, wait: true, waitMs: 60_000 });
    await api.tasks.send.mutate({ id, input: 'message LIMA' });
    await waitFor(async () => (await contents(id)).includes('Done: "message LIMA"'), 'the answer to LIMA');
    const live = await readAll(id, 50);
    expect(live.at(-1)).toMatchObject({ source: 'live' });
    const liveEntries = live.flatMap((p) => p.entries);
    expect(liveEntries[0]?.content).toBe('Say hello');
    expect(liveEntries.at(-1)).toMatchObject({ segment: 11, content: 'Done: "message LIMA"' });
  }, 300_000);
});
