import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults } from '../src/defaults.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import {
  batchPath,
  Calls,
  MemoryWatch,
  type NoisyNeighbours,
  startNoisyNeighbours,
  taskGetPath,
} from './noisy-neighbours.ts';

/** The victim's calls while the flood runs: one at a time, well within its own burst. */
const victimCalls = 100;
/** Requests past which a limit that never answers fails the test rather than its timeout. */
const enough = 10 * victimCalls;
/** Full batches the flooder sends at once: more calls together than a key's burst holds, at any speed. */
const batchesAtOnce = Math.ceil(defaults.rateLimitBurst / defaults.maxBatchSize) + 1;
const watchStreams = 200;
/**
 * The server's peak resident memory must stay below this: about 200 MiB of its own (Node.js, tsx,
 * the pools), two whole reads of the 30 MB snapshot at a time, each holding a few times its size,
 * and the garbage of the reads before them that the collector has not yet reclaimed. Unbounded,
 * twenty such reads at once took a server past 2 GB.
 */
const memoryBoundMiB = 1024;

// The server runs with its default limits (but the heavy-read share): they are what this test
// shows holding the flooder back while the victim's calls go through. How much the flood slows the
// victim is a figure of the machine: `pnpm bench:noisy` measures it.
describe.runIf(postgresServerUrl())('one key flooding the server, another key using it', () => {
  let database: TestDatabase;
  let neighbours: NoisyNeighbours;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    neighbours = await startNoisyNeighbours(databaseEnv(database));
  }, 120_000);

  afterAll(async () => {
    await neighbours?.stop();
    await database?.drop();
  });

  it("refuses the flooder's excess, serves every one of the other key's calls, and keeps memory bounded", async () => {
    const { server, victim, flooder } = neighbours;
    const victimApi = new Calls(server.url, victim.key);
    const flood = new Calls(server.url, flooder.key, 64);
    const memory = new MemoryWatch(server.pid);
    const outcomes = new Map<string, number>();
    const count = (what: string, status: number) =>
      outcomes.set(`${what} ${status}`, (outcomes.get(`${what} ${status}`) ?? 0) + 1);

    // Watch streams first (the key's calls a second would refuse them later), open throughout.
    const watchPath = `tasks.watch?input=${encodeURIComponent(JSON.stringify({ json: { id: flooder.taskId } }))}`;
    const watches = await Promise.all(Array.from({ length: watchStreams }, () => flood.stream(watchPath)));
    expect(watches.filter((w) => w.accepted())).toHaveLength(defaults.maxOpenWatchesPerKey);

    // The flooder's burst of whole snapshots (one a request, or twenty in one batch), which its
    // share lets through, from two loops until the share is spent: where memory peaks.
    const oneSnapshot = batchPath(['snapshots.get'], { taskId: flooder.taskId });
    const twentySnapshots = batchPath(Array(20).fill('snapshots.get'), { taskId: flooder.taskId });
    let snapshotsRead = 0;
    let shareSpent = false;
    await Promise.all(
      [0, 1].map(async (loop) => {
        for (let i = loop; !shareSpent && i < enough; i++) {
          const { status, bytes, text } = await flood.read(i % 2 ? twentySnapshots : oneSnapshot);
          // A refusal is a few hundred bytes (twenty of them in a batch); a snapshot, megabytes.
          if (bytes > 1_000_000) snapshotsRead++;
          else shareSpent ||= text.includes('used your share');
          count('snapshot', status);
        }
      }),
    );
    expect(snapshotsRead).toBeGreaterThan(0);
    expect(shareSpent).toBe(true);

    // Then the flood: each round, full batches (more at once than the burst), one ten times over
    // the batch cap and a snapshot, beside one call of the victim's. Rounds go on until every
    // limit has answered, and at least `victimCalls` of them: every victim call meets the flood.
    const fullBatch = batchPath(Array(defaults.maxBatchSize).fill('tasks.get'), { id: flooder.taskId });
    const oversize = batchPath(Array(defaults.maxBatchSize * 10).fill('tasks.list'));
    const taskGet = taskGetPath(victim.taskId);
    const victimStatuses: number[] = [];
    const floodRefused = () => ['batch 400', 'batch 429', 'snapshot 429'].every((o) => outcomes.has(o));
    let snapshotsReadInFlood = 0;
    while ((victimStatuses.length < victimCalls || !floodRefused()) && victimStatuses.length < enough) {
      const [status] = await Promise.all([
        victimApi.get(taskGet),
        ...Array.from({ length: batchesAtOnce }, async () => count('batch', await flood.get(fullBatch))),
        flood.get(oversize).then((status) => count('batch', status)),
        flood.read(oneSnapshot).then(({ status, bytes }) => {
          if (bytes > 1_000_000) snapshotsReadInFlood++;
          count('snapshot', status);
        }),
      ]);
      victimStatuses.push(status);
    }
    const watchesOpen = watches.filter((w) => w.accepted()).length;
    for (const watch of watches) watch.close();
    const peakMiB = await memory.stop();
    flood.close();
    victimApi.close();
    process.stdout.write(
      `noisy neighbour: ${victimStatuses.length} victim calls; server RSS ${memory.firstMiB} MiB before the burst, ` +
        `peak ${peakMiB} MiB; whole snapshots read ${snapshotsRead} in the burst, ${snapshotsReadInFlood} in the flood; ` +
        `watch streams open ${watchesOpen} of ${watchStreams}; flood answers ${JSON.stringify(Object.fromEntries(outcomes))}\n`,
    );

    // The limits were what the flood met: the batch cap, the rate limit, the share of whole reads.
    expect(floodRefused()).toBe(true);
    expect(watchesOpen).toBeLessThanOrEqual(defaults.maxOpenWatchesPerKey);
    // The victim was served every time, and memory stayed bounded.
    expect(victimStatuses.filter((status) => status !== 200)).toEqual([]);
    expect(peakMiB).toBeLessThan(memoryBoundMiB);
  }, 180_000);
});
