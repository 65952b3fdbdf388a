// pnpm bench:watch: how soon a watcher sees a change. Two server processes on one PostgreSQL
// database; tasks.watch and events.watch are open on both while the task is paused and resumed
// through one of them, round after round. Each pause's time from its request to each stream's news:
// on the server that paused (woken in its own process) and on the other (woken through NOTIFY; its
// fallback looks are seconds apart). The test (apps/server/src/lifecycle/watch-across.test.ts)
// proves the other server's watchers see it through the notification; this says how soon.
// Prints a table; writes bench/results/watch.json.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FakeAgent } from '../apps/server/test/fake-agent.ts';
import { startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { benchServerEnv, quantile, seedTask, waitFor, withDatabase } from './support.ts';

const rounds = Number(process.env.BENCH_WATCH_ROUNDS ?? 30);
const token = `bench-${randomBytes(24).toString('hex')}`;

const round = (n: number) => Math.round(n * 100) / 100;

/** A stream's news as it arrives: what, and when (performance.now()); `next` finds the first match after a mark. */
function arrivals() {
  const seen: Array<{ what: string; at: number }> = [];
  let waiter: { from: number; whats: string[]; resolve: (at: number) => void } | undefined;
  return {
    push(what: string) {
      const at = performance.now();
      seen.push({ what, at });
      if (waiter && seen.length > waiter.from && waiter.whats.includes(what)) {
        waiter.resolve(at);
        waiter = undefined;
      }
    },
    mark: () => seen.length,
    /** When one of `whats` arrived at or after `from`; waits for it. */
    next(from: number, ...whats: string[]): Promise<number> {
      const found = seen.slice(from).find((s) => whats.includes(s.what));
      if (found) return Promise.resolve(found.at);
      return new Promise((resolve) => {
        waiter = { from, whats, resolve };
      });
    },
  };
}

/** tasks.watch and events.watch of `taskId` through `client`, noting what each says. */
function watchBoth(client: HiatusClient, taskId: string) {
  const statuses = arrivals();
  const events = arrivals();
  const tasks = client.tasks.watch.subscribe({ id: taskId }, { onData: (t) => statuses.push(t.status) });
  const stream = client.events.watch.subscribe({ taskId }, { onData: ({ data }) => events.push(data.type) });
  return {
    statuses,
    events,
    close: () => {
      tasks.unsubscribe();
      stream.unsubscribe();
    },
  };
}

const spread = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: round(quantile(sorted, 0.5)),
    p99: round(quantile(sorted, 0.99)),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
};

async function main(url: string) {
  const env = benchServerEnv(url, token);
  const [pauser, other] = [await startServerProcess(env), await startServerProcess(env)];
  const agent = await (await new FakeAgent().start()).say(10);
  try {
    const client = createHiatusClient({ url: pauser.url, token });
    const task = await seedTask(client, agent.url, 'watched');
    const here = watchBoth(client, task.id);
    const there = watchBoth(createHiatusClient({ url: other.url, token }), task.id);
    // Both task streams have said where they start.
    await Promise.all([here.statuses.next(0, 'active'), there.statuses.next(0, 'active')]);
    const figures = { pauseAnswer: [] as number[], here: { task: [] as number[], event: [] as number[] } };
    const across = { task: [] as number[], event: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const marks = [here.statuses, here.events, there.statuses, there.events].map((a) => a.mark());
      const sent = performance.now();
      await client.tasks.pause.mutate({ id: task.id });
      figures.pauseAnswer.push(performance.now() - sent);
      const [hereTask, hereEvent, thereTask, thereEvent] = await Promise.all([
        // A watcher that looks after the stop finished says paused at once.
        here.statuses.next(marks[0]!, 'pausing', 'paused'),
        here.events.next(marks[1]!, 'task.pausing'),
        there.statuses.next(marks[2]!, 'pausing', 'paused'),
        there.events.next(marks[3]!, 'task.pausing'),
      ]);
      figures.here.task.push(hereTask - sent);
      figures.here.event.push(hereEvent - sent);
      across.task.push(thereTask - sent);
      across.event.push(thereEvent - sent);
      await waitFor(client, task.id, 'paused');
      await client.tasks.resume.mutate({ id: task.id });
      await waitFor(client, task.id, 'active');
    }
    here.close();
    there.close();

    const result = {
      rounds,
      pauseAnswerMs: spread(figures.pauseAnswer),
      sameServer: { tasksWatchMs: spread(figures.here.task), eventsWatchMs: spread(figures.here.event) },
      otherServer: { tasksWatchMs: spread(across.task), eventsWatchMs: spread(across.event) },
    };
    const row = (measure: string, s: { p50: number; p99: number; max: number }) => ({
      measure,
      'p50 ms': s.p50,
      'p99 ms': s.p99,
      'max ms': s.max,
    });
    console.table([
      row('tasks.pause answered', result.pauseAnswerMs),
      row('pause sent → tasks.watch says pausing (or paused), same server', result.sameServer.tasksWatchMs),
      row('pause sent → events.watch task.pausing, same server', result.sameServer.eventsWatchMs),
      row('pause sent → tasks.watch says pausing (or paused), other server', result.otherServer.tasksWatchMs),
      row('pause sent → events.watch task.pausing, other server', result.otherServer.eventsWatchMs),
    ]);
    const out = path.join(import.meta.dirname, 'results', 'watch.json');
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${out}`);
  } finally {
    await agent.stop();
    await Promise.all([pauser.stop(), other.stop()]);
  }
}

await withDatabase(main);
process.exit(0);
