import type { apiClient } from './api-client.ts';

export type StormOperation = 'pause' | 'resume' | 'delete';
export type StormSuccess = { op: StormOperation; taskId: string; buildId: string };
export type StormResult = { issued: number; successes: StormSuccess[]; refusals: Map<string, number> };

/** A small seeded generator: the same sequence of choices on every run. */
export function seeded(seed: number): (n: number) => number {
  let state = seed;
  return (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
}

/**
 * Many clients firing lifecycle operations at the same tasks through several servers: mostly the
 * step a task's state allows as one server saw it a moment ago (so clients collide), sometimes a
 * blind one, and at most `maxDeletes` deletes. Bounded by `operations` and `timeoutMs`.
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
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
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
          refuse(codeOf(error)); // a server that is gone, say
          await new Promise((r) => setTimeout(r, 20));
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
        else {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
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
