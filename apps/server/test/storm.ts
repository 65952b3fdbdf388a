import { vi } from 'vitest';
import type { Db } from '../src/db/connection.ts';
import { apiClient } from './api-client.ts';
import type { TestDatabase } from './databases.ts';
import type { FakeAgent } from './fake-agent.ts';
import type { ServerProcess } from './server-process.ts';

export type StormOperation = 'pause' | 'resume' | 'delete';
export type StormSuccess = { op: StormOperation; taskId: string; buildId: string };
export type StormResult = { issued: number; successes: StormSuccess[]; refusals: Map<string, number> };

/** A small seeded generator: the same sequence of choices on every run. */
function seeded(seed: number): (n: number) => number {
  let state = seed;
  return (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
}

/**
 * Many clients firing lifecycle operations at the same tasks through several servers: mostly the
 * step a task's state allows as one server saw it a moment ago (so clients collide), sometimes a
 * blind one, and at most `maxDeletes` deletes. Bounded by `operations`, and by `timeoutMs` when
 * given (a storm meant to be cut short); how long it takes depends on the machine, so a test that
 * must see every operation issued gives none.
 */
export async function runStorm(options: {
  apis: Array<ReturnType<typeof apiClient>>;
  taskIds: string[];
  clients: number;
  operations: number;
  seed: number;
  maxDeletes?: number;
  timeoutMs?: number;
}): Promise<StormResult> {
  const pick = seeded(options.seed);
  const successes: StormSuccess[] = [];
  const refusals = new Map<string, number>();
  const refuse = (code: string) => refusals.set(code, (refusals.get(code) ?? 0) + 1);
  const deadline = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
  let issued = 0;
  let deletes = 0;
  await Promise.all(
    Array.from({ length: options.clients }, async () => {
      while (issued < options.operations && Date.now() < deadline) {
        const taskId = options.taskIds[pick(options.taskIds.length)]!;
        const api = options.apis[pick(options.apis.length)]!;
        let seen: string;
        try {
          seen = (await api.tasks.get.query({ id: taskId })).status;
        } catch (error) {
          // A server that is gone, say: the next try picks a server again (each try is a real
          // request, or a connection refused at once, so this loop never spins on nothing).
          refuse(codeOf(error));
          continue;
        }
        const roll = pick(100);
        let op: StormOperation;
        if (roll < 2 && deletes < (options.maxDeletes ?? 3)) {
          op = 'delete';
          deletes++;
        } else if (roll < 15) op = pick(2) ? 'pause' : 'resume';
        else if (seen === 'active') op = 'pause';
        else if (seen === 'paused' || seen === 'error') op = 'resume';
        else continue; // between two states: another task (the next read is a real request)
        if (issued >= options.operations) break; // another client took the last one meanwhile
        issued++;
        try {
          const result =
            op === 'pause'
              ? await api.tasks.pause.mutate({ id: taskId })
              : op === 'resume'
                ? await api.tasks.resume.mutate({ id: taskId })
                : await api.tasks.delete.mutate({ id: taskId });
          successes.push({ op, taskId, buildId: result.build.id });
        } catch (error) {
          refuse(codeOf(error));
        }
      }
    }),
  );
  return { issued, successes, refusals };
}

function codeOf(error: unknown): string {
  const data = (error as { data?: { code?: string } }).data;
  return data?.code ?? `transport: ${(error as Error).message}`;
}

export function describeStorm({ successes, refusals }: StormResult): string {
  const count = (op: StormOperation) => successes.filter((s) => s.op === op).length;
  return `${successes.length} successes (${count('pause')} pauses, ${count('resume')} resumes, ${count('delete')} deletes), refusals ${JSON.stringify(Object.fromEntries(refusals))}`;
}

/**
 * A member with a key, and `count` tasks of theirs created round-robin through the servers at
 * `urls`, each talking to one of `agents`. `extra(i)` adds settings to task i.
 */
export async function seedStormTasks(options: {
  urls: string[];
  adminToken: string;
  agents: FakeAgent[];
  count: number;
  username: string;
  extra?: (i: number) => { idleTimeoutSeconds?: number };
}): Promise<{ key: string; taskIds: string[] }> {
  const admin = apiClient(options.urls[0]!, options.adminToken);
  const user = await admin.users.create.mutate({ username: options.username });
  const { key } = await admin.apiKeys.create.mutate({ userId: user.id });
  const created = await Promise.all(
    Array.from({ length: options.count }, (_, i) =>
      apiClient(options.urls[i % options.urls.length]!, key).tasks.create.mutate({
        name: `${options.username}-${i}`,
        prompt: 'storm',
        agentUrl: options.agents[i % options.agents.length]!.url,
        sendPrompt: false, // the agents' conversations are the storm's own
        ...options.extra?.(i),
      }),
    ),
  );
  return { key, taskIds: created.map((c) => c.task.id) };
}

/** Waits until no build job is pending or running: the provisioners have caught up. */
export async function waitForJobsToSettle(db: Db): Promise<void> {
  await vi.waitFor(
    async () => {
      const open = await db
        .selectFrom('workspace_builds')
        .where('job_status', 'in', ['pending', 'running'])
        .select(['id', 'job_status'])
        .execute();
      if (open.length > 0) throw new Error(`build jobs still open: ${JSON.stringify(open)}`);
    },
    { timeout: 120_000, interval: 100 },
  );
}

export type DuelResult = {
  /** One entry per race: how many of its contenders won. */
  winnersPerRace: number[];
  /** The winners, to check that each is stored. */
  successes: StormSuccess[];
  /** Every losing contender's error code. */
  refusals: Map<string, number>;
};

/**
 * Races whose progress is certain by construction: each task here is touched by no one else, and
 * `contenders` identical operations are fired at it at once through every server, `rounds` times
 * a pause then a resume. Exactly one contender can win each race, whatever the timing, and the
 * next race waits until the winner's build is done.
 */
export async function runDuels(options: {
  apis: Array<ReturnType<typeof apiClient>>;
  taskIds: string[];
  contenders: number;
  rounds: number;
}): Promise<DuelResult> {
  const result: DuelResult = { winnersPerRace: [], successes: [], refusals: new Map() };
  const waitFor = (taskId: string, status: string) =>
    vi.waitFor(
      async () => {
        const task = await options.apis[0]!.tasks.get.query({ id: taskId });
        if (task.status !== status) throw new Error(`task ${taskId} is ${task.status}, not yet ${status}`);
      },
      { timeout: 120_000, interval: 50 },
    );
  const race = async (taskId: string, op: 'pause' | 'resume') => {
    const outcomes = await Promise.allSettled(
      Array.from({ length: options.contenders }, (_, i) => {
        const api = options.apis[i % options.apis.length]!;
        return op === 'pause' ? api.tasks.pause.mutate({ id: taskId }) : api.tasks.resume.mutate({ id: taskId });
      }),
    );
    let winners = 0;
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') {
        winners++;
        result.successes.push({ op, taskId, buildId: outcome.value.build.id });
      } else {
        const code = codeOf(outcome.reason);
        result.refusals.set(code, (result.refusals.get(code) ?? 0) + 1);
      }
    }
    result.winnersPerRace.push(winners);
  };
  await Promise.all(
    options.taskIds.map(async (taskId) => {
      await waitFor(taskId, 'active');
      for (let round = 0; round < options.rounds; round++) {
        await race(taskId, 'pause');
        await waitFor(taskId, 'paused');
        await race(taskId, 'resume');
        await waitFor(taskId, 'active');
      }
    }),
  );
  return result;
}

/** A storm suite's teardown: its server processes, then its agents, then its database. */
export async function tearDownStorm(
  processes: ServerProcess[],
  agents: FakeAgent[],
  database?: TestDatabase,
): Promise<void> {
  await Promise.all(processes.map((p) => p.stop()));
  await Promise.all(agents.map((a) => a.stop()));
  await database?.drop();
}
