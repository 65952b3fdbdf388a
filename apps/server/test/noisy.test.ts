import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.ts';
import { type DatabaseHandle, openDatabase } from '../src/db/connection.ts';
import { defaults } from '../src/defaults.ts';
import { pushSnapshot } from '../src/lifecycle/snapshots.ts';
import { apiClient } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { FakeAgent } from './fake-agent.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

const adminToken = 'noisy-suite-admin-token-0123456789abcdef';

/**
 * The victim's pace: one `tasks.get` every this many ms (well within its rate limit), and how many
 * in all, quiet and flooded each, taken in `rounds` alternating stretches.
 */
const victimEveryMs = 20;
const samples = 400;
const rounds = 20;
const settlingCalls = 2;
/**
 * The flood: loops sending batches and loops reading the big snapshot, each a request every
 * `floodPauseMs` whatever the answers say, and watch streams opened at once. It asks for far more than
 * the server would give anyone (tens of thousands of calls a second, megabytes of snapshots); it
 * does not try to saturate the server's network or HTTP parser, which no per-key limit can protect
 * (that is a proxy's connection limits' job).
 */
const batchLoops = 2;
const heavyLoops = 2;
const floodPauseMs = 50;
const watchStreams = 200;
/** The flooder's snapshot: about 30 MB, as in the report. */
const snapshotMessages = 300;
const snapshotMessageBytes = 100_000;
/**
 * The server's peak resident memory must stay below this: about 200 MiB of its own (Node.js, tsx,
 * the pools), two whole reads of the 30 MB snapshot at a time, each holding a few times its size,
 * and the garbage of the reads before them that the collector has not yet reclaimed. Unbounded,
 * twenty such reads at once took a server past 2 GB.
 */
const memoryBoundMiB = 1024;

// The server runs with its default limits (but one): they are what this test shows protecting the victim.
describe.runIf(postgresServerUrl())('one key flooding the server, another key using it', () => {
  let database: TestDatabase;
  let server: ServerProcess;
  let agent: FakeAgent;
  let victim: { key: string; taskId: string };
  let flooder: { key: string; taskId: string };

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    server = await startServerProcess({
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_DEMO_TEMPLATE: 'false',
      // The defaults, but for the share of time in whole reads: so tight that after its burst the
      // flooder reads no snapshot while the test runs (by default, one 30 MB read every 20 s or so).
      HIATUS_HEAVY_READ_MS_PER_SECOND: '1',
      // (info: the harness waits for the "listening" line)
      LOG_LEVEL: 'info',
    });
    agent = (await new FakeAgent().start()).say(6);
    const admin = apiClient(server.url, adminToken);
    const member = async (username: string) => {
      const user = await admin.users.create.mutate({ username });
      const { key } = await admin.apiKeys.create.mutate({ userId: user.id });
      const { task } = await apiClient(server.url, key).tasks.create.mutate({
        name: `${username}-task`,
        prompt: 'p',
        agentUrl: agent.url,
      });
      return { key, taskId: task.id };
    };
    victim = await member('victim');
    flooder = await member('flooder');
    // The flooder's task gets a 30 MB snapshot, pushed as its workspace would.
    const handle: DatabaseHandle = openDatabase(database.config);
    try {
      const messages = Array.from({ length: snapshotMessages }, (_, id) => ({
        id,
        role: id % 2 === 0 ? ('user' as const) : ('agent' as const),
        content: `message ${id} `.padEnd(snapshotMessageBytes, 'x'),
        time: new Date(Date.UTC(2026, 0, 1, 0, 0, id)).toISOString(),
      }));
      const pushed = await pushSnapshot(createApp(handle.db), flooder.taskId, { messages });
      if (!pushed.stored) throw new Error(`the snapshot was not stored: ${pushed.reason}`);
    } finally {
      await handle.close();
    }
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await agent?.stop();
    await database?.drop();
  });

  it("keeps the other key's tasks.get p99 within 5× its quiet value, and memory bounded", async () => {
    const victimCalls = new Calls(server.url, victim.key);
    const flood = new Calls(server.url, flooder.key, 64);
    const taskGet = `tasks.get?input=${encodeURIComponent(JSON.stringify({ json: { id: victim.taskId } }))}`;
    const quiet: number[] = [];
    const flooded: number[] = [];
    // Each stretch's first calls see the change from the last (streams closing or opening): not counted.
    const measure = async (into: number[]) => {
      for (let i = -settlingCalls; i < samples / rounds; i++) {
        const started = performance.now();
        const status = await victimCalls.get(taskGet);
        if (i >= 0) into.push(performance.now() - started);
        expect(status).toBe(200);
        await sleep(victimEveryMs);
      }
    };
    for (let i = 0; i < 20; i++) await victimCalls.get(taskGet); // warm up: connections, plans, JIT

    const memory = new MemoryWatch(server.pid);
    const outcomes = new Map<string, number>();
    const count = (what: string, status: number) =>
      outcomes.set(`${what} ${status}`, (outcomes.get(`${what} ${status}`) ?? 0) + 1);
    let state: 'paused' | 'flooding' | 'done' = 'paused';
    const floodLoop = async (what: string, next: () => Promise<number>) => {
      while (state !== 'done') {
        if (state === 'flooding') count(what, await next().catch(() => 0));
        await sleep(floodPauseMs);
      }
    };

    // Batches: full ones of tasks.get, and every fourth ten times over the cap.
    const fullBatch = batchPath(Array(defaults.maxBatchSize).fill('tasks.get'), { id: flooder.taskId });
    const oversize = batchPath(Array(defaults.maxBatchSize * 10).fill('tasks.list'));
    const batches = Array.from({ length: batchLoops }, (_, loop) => {
      let i = loop;
      return floodLoop('batch', () => flood.get(i++ % 4 === 3 ? oversize : fullBatch));
    });
    // Whole snapshots: one a request, and twenty in one batch.
    const oneSnapshot = batchPath(['snapshots.get'], { taskId: flooder.taskId });
    const twentySnapshots = batchPath(Array(20).fill('snapshots.get'), { taskId: flooder.taskId });
    const refusedInARow = Array<number>(heavyLoops).fill(0);
    let snapshotsRead = 0;
    let shareSpent = false;
    const heavy = Array.from({ length: heavyLoops }, (_, loop) => {
      let i = loop;
      return floodLoop('snapshot', async () => {
        const { status, bytes, text } = await flood.read(i++ % 2 ? twentySnapshots : oneSnapshot);
        // A refusal is a few hundred bytes (twenty of them in a batch); a snapshot, megabytes.
        const read = bytes > 1_000_000;
        refusedInARow[loop] = read ? 0 : refusedInARow[loop]! + 1;
        if (read) snapshotsRead++;
        shareSpent = !read && (shareSpent || text.includes('used your share'));
        return status;
      });
    });
    const watchPath = `tasks.watch?input=${encodeURIComponent(JSON.stringify({ json: { id: flooder.taskId } }))}`;
    const watchesLetIn: number[] = [];

    const flooding = async (during: () => Promise<void>) => {
      // Watch streams first (the key's calls a second would refuse them later), open through the stretch.
      const watches = await Promise.all(Array.from({ length: watchStreams }, () => flood.stream(watchPath)));
      state = 'flooding';
      await during();
      watchesLetIn.push(watches.filter((w) => w.accepted()).length);
      state = 'paused';
      for (const watch of watches) watch.close();
    };

    // First the flooder's burst of whole reads, which its share lets through (that is what a burst
    // is for, and where memory peaks): each holds the event loop a few hundred ms, so it is not
    // what the victim's p99 is measured against; what follows is the flood the limits hold back.
    await flooding(async () => {
      const deadline = Date.now() + 60_000;
      while (!(shareSpent && refusedInARow.every((n) => n >= 3)) && Date.now() < deadline) await sleep(50);
    });
    const snapshotsReadInBurst = snapshotsRead;
    await sleep(2_000); // the burst's garbage collected, here and in the flooder
    // Quiet and flooded stretches alternate, so both see the same machine (other test files run beside this one).
    for (let round = 0; round < rounds; round++) {
      await measure(quiet);
      await flooding(() => measure(flooded));
    }
    state = 'done';
    await Promise.all([...batches, ...heavy]);
    const peakMiB = await memory.stop();

    const quietP99 = percentile(quiet, 0.99);
    const floodedP99 = percentile(flooded, 0.99);
    process.stdout.write(
      `noisy neighbour: tasks.get p99 quiet ${quietP99.toFixed(1)} ms, flooded ${floodedP99.toFixed(1)} ms ` +
        `(p50 ${percentile(quiet, 0.5).toFixed(1)} / ${percentile(flooded, 0.5).toFixed(1)} ms, ${samples} samples each); ` +
        `server RSS ${memory.firstMiB} MiB before the flood, peak ${peakMiB} MiB; watch streams let in ${watchesLetIn.join(', ')} of ${watchStreams}; ` +
        `whole snapshots read ${snapshotsRead}; flood answers ${JSON.stringify(Object.fromEntries(outcomes))}\n`,
    );

    // The limits were what the flood met.
    expect(outcomes.get('batch 400')).toBeGreaterThan(0); // over the batch cap
    expect(outcomes.get('batch 429')).toBeGreaterThan(0); // over the rate limit
    expect(watchesLetIn[0]).toBe(defaults.maxOpenWatchesPerKey);
    expect(snapshotsReadInBurst).toBe(snapshotsRead); // none after the burst
    expect(Math.max(...watchesLetIn)).toBeLessThanOrEqual(defaults.maxOpenWatchesPerKey);
    expect(snapshotsRead).toBeGreaterThan(0); // its burst
    expect(outcomes.get('snapshot 429')).toBeGreaterThan(0); // then its share was spent
    // And the victim hardly noticed.
    expect(floodedP99).toBeLessThanOrEqual(5 * quietP99);
    expect(peakMiB).toBeLessThan(memoryBoundMiB);
  }, 180_000);
});

/** A tRPC batch path (GET, as httpBatchLink sends queries) calling every path of `paths`, each with `input`. */
function batchPath(paths: string[], input?: unknown): string {
  const query = new URLSearchParams({ batch: '1' });
  if (input !== undefined) {
    query.set('input', JSON.stringify(Object.fromEntries(paths.map((_, i) => [i, { json: input }]))));
  }
  return `${paths.join(',')}?${query}`;
}

/** Raw keep-alive HTTP calls with one key: no client library between the test and the timings. */
class Calls {
  private readonly agent: http.Agent;
  constructor(
    private readonly base: string,
    private readonly key: string,
    maxSockets = 4,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  /** GET /trpc/<path>; resolves with the status once the body is read (and thrown away). */
  async get(path: string): Promise<number> {
    return (await this.read(path)).status;
  }

  /** GET /trpc/<path>; resolves with the status, the body's size and (when short) its text once it is read. */
  read(path: string): Promise<{ status: number; bytes: number; text: string }> {
    return new Promise((resolve, reject) => {
      const request = http.get(`${this.base}/trpc/${path}`, { agent: this.agent, headers: this.headers() }, (res) => {
        let bytes = 0;
        const short: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes <= 64 * 1024) short.push(chunk);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            bytes,
            text: bytes <= 64 * 1024 ? Buffer.concat(short).toString('utf8') : '',
          }),
        );
        res.on('error', reject);
      });
      request.on('error', reject);
    });
  }

  /** Opens a server-sent-events stream on a connection of its own; `accepted` once it carries data, not an error. */
  stream(path: string): Promise<{ accepted(): boolean; close(): void }> {
    return new Promise((resolve, reject) => {
      let text = '';
      const request = http.get(
        `${this.base}/trpc/${path}`,
        { headers: { ...this.headers(), accept: 'text/event-stream' } },
        (res) => {
          let resolved = false;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
            if (!resolved && /\ndata: /.test(`\n${text}`)) {
              resolved = true;
              resolve({
                accepted: () => !res.destroyed && !res.complete && !text.includes('serialized-error'),
                close: () => request.destroy(),
              });
            }
          });
          res.on('error', () => undefined);
          res.on('end', () => {
            if (!resolved) resolve({ accepted: () => false, close: () => undefined });
          });
        },
      );
      request.on('error', reject);
    });
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.key}` };
  }
}

/** Samples a process's resident memory every 20 ms; `stop` answers the peak seen (or the kernel's high-water mark). */
class MemoryWatch {
  private peakKiB = 0;
  private firstKiB = 0;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => void this.sample(), 20);
  }

  /** The first sample's resident memory, in MiB. */
  get firstMiB(): number {
    return Math.round(this.firstKiB / 1024);
  }

  async stop(): Promise<number> {
    clearInterval(this.timer);
    await this.sample();
    return Math.round(this.peakKiB / 1024);
  }

  private async sample(): Promise<void> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8').catch(() => '');
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
    this.firstKiB ||= field('VmRSS');
    this.peakKiB = Math.max(this.peakKiB, field('VmRSS'), field('VmHWM'));
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}
