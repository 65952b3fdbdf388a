// The docker driver (issue 25), beside the process driver in the same run, on one server process
// with its built-in provisioner: a cold resume (a new container on the task's volume) until the
// agent answers, a hot resume (a frozen container thawed), a pause until the container is stopped,
// the memory a paused task holds hot and cold, and 20 resumes at once.
// Alone: `pnpm bench:docker` (figures printed and written to bench/results/docker.json). Needs a
// Docker Engine; the demo image is built here if missing (nothing is pulled).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServerProcess } from '../apps/server/test/server-process.ts';
import { createHiatusClient, type HiatusClient } from '../packages/client/src/index.ts';
import { dockerDriver } from '../packages/provisioner/src/docker-driver.ts';
import { dockerClient } from '../packages/provisioner/src/docker-engine.ts';
import { demoImage, ensureDemoImage } from '../packages/provisioner/src/docker-image.ts';
import type { BuildOutputs, BuildSpec } from '../packages/provisioner/src/driver.ts';
import { benchServerEnv, quantile, table, waitFor, withDatabase } from './support.ts';

const rounds = Number(process.env.BENCH_DOCKER_ROUNDS ?? 20);
const together = Number(process.env.BENCH_DOCKER_TOGETHER ?? 20);
const taskLabel = 'dev.hiatus.task';

const demoAgentPath = path.join(import.meta.dirname, '../packages/provisioner/demo-agent/agent.mjs');
const dockerSettings = (hotPauseSeconds: number) => ({
  image: `${demoImage.repository}:${demoImage.stableTag}`,
  command: [demoImage.node, demoImage.agent],
  env: { DEMO_HOST: '0.0.0.0' },
  user: demoImage.user,
  hotPauseSeconds,
});
const templates = {
  process: { driver: 'process', settings: { command: [process.execPath, demoAgentPath] } },
  'docker cold': { driver: 'docker', settings: dockerSettings(0) },
  'docker hot': { driver: 'docker', settings: dockerSettings(3600) },
} as const;
type Kind = keyof typeof templates;
const templateName = (kind: Kind) => `bench-${kind.replace(' ', '-')}`;

async function statusAnswers(agentUrl: string): Promise<void> {
  for (;;) {
    try {
      const response = await fetch(`${agentUrl}/status`);
      if (response.status === 200) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Until the task is active and its agent answers; the agentUrl. */
async function untilAnswering(client: HiatusClient, id: string): Promise<string> {
  await waitFor(client, id, 'active');
  const { agentUrl } = await client.tasks.get.query({ id });
  await statusAnswers(agentUrl!);
  return agentUrl!;
}

async function containersOf(taskId: string) {
  return dockerClient().listContainers({ all: true, filters: { label: [`${taskLabel}=${taskId}`] } });
}

async function createTask(client: HiatusClient, kind: Kind, name: string): Promise<string> {
  const { task } = await client.tasks.create.mutate({ name, prompt: '', template: templateName(kind) });
  await untilAnswering(client, task.id);
  return task.id;
}

/** The memory a task holds while paused: its frozen container's (hot), nothing of Docker's (cold), none (process). */
async function pausedMemory(taskId: string): Promise<number> {
  const [container] = await containersOf(taskId);
  if (!container) return 0;
  const stats = await dockerClient().getContainer(container.Id).stats({ stream: false });
  return stats.memory_stats.usage ?? 0;
}

type Round = { pauseMs: number; resumeMs: number; pausedBytes: number };

/** Pauses (timed until the task is paused: its stop build done) and resumes (timed until the agent answers). */
async function round(client: HiatusClient, kind: Kind, taskId: string): Promise<Round> {
  let started = performance.now();
  await client.tasks.pause.mutate({ id: taskId });
  await waitFor(client, taskId, 'paused');
  const pauseMs = performance.now() - started;
  const left = await containersOf(taskId);
  if (kind === 'docker cold' && left.length) throw new Error('a cold pause left a container');
  if (kind === 'docker hot' && left[0]?.State !== 'paused') throw new Error('a hot pause left no frozen container');
  const pausedBytes = await pausedMemory(taskId);
  started = performance.now();
  await client.tasks.resume.mutate({ id: taskId });
  await untilAnswering(client, taskId);
  return { pauseMs, resumeMs: performance.now() - started, pausedBytes };
}

/** `count` paused tasks resumed at once: from the calls until every agent answers. */
async function resumeTogether(client: HiatusClient, kind: Kind, count: number): Promise<{ ms: number; ids: string[] }> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await createTask(client, kind, `together-${kind}-${i}`));
  for (const id of ids) await client.tasks.pause.mutate({ id });
  for (const id of ids) await waitFor(client, id, 'paused');
  const started = performance.now();
  await Promise.all(
    ids.map(async (id) => {
      await client.tasks.resume.mutate({ id });
      await untilAnswering(client, id);
    }),
  );
  return { ms: performance.now() - started, ids };
}

/**
 * The driver alone, in this process (no server, no job round trip): a cold resume (a new container)
 * and a hot one (a thaw), each from its `run` call until the agent answered, as the driver waits for it.
 */
async function driverOnly(dataDir: string): Promise<Array<Record<string, unknown>>> {
  const ctx = { dataDir };
  const results: Record<'cold' | 'hot', number[]> = { cold: [], hot: [] };
  for (const kind of ['cold', 'hot'] as const) {
    const taskId = `bench-driver-${kind}-${randomBytes(4).toString('hex')}`;
    const settings = dockerSettings(kind === 'hot' ? 3600 : 0);
    const spec = (
      transition: 'start' | 'stop' | 'delete',
      reason: string,
      previousOutputs: BuildOutputs | null = null,
    ): BuildSpec => ({
      buildId: randomBytes(8).toString('hex'),
      taskId,
      workspaceId: taskId,
      transition,
      reason,
      prompt: '',
      parameters: {},
      settings,
      previousOutputs,
      ...(transition === 'start' ? { start: 'resume' as const, previousConversation: [] } : {}),
    });
    let outputs = await dockerDriver.run(spec('start', 'initiator'), ctx);
    for (let i = 0; i <= rounds; i++) {
      await dockerDriver.run(spec('stop', 'task_manual_pause'), ctx);
      const started = performance.now();
      outputs = await dockerDriver.run(spec('start', 'task_resume', outputs), ctx);
      if (i > 0) results[kind].push(performance.now() - started); // the first is a warm-up
    }
    await dockerDriver.run(spec('delete', 'task_delete'), ctx);
  }
  return (['cold', 'hot'] as const).map((kind) => ({
    kind: `docker ${kind}, the driver alone`,
    'resume p50 ms': round1(quantile(sorted(results[kind]), 0.5)),
    'p99 ms': round1(quantile(sorted(results[kind]), 0.99)),
  }));
}

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const round1 = (n: number) => Math.round(n * 10) / 10;

export async function dockerCosts(client: HiatusClient) {
  for (const [kind, template] of Object.entries(templates)) {
    await client.templates.create.mutate({ name: templateName(kind as Kind), ...template });
  }
  const kinds = Object.keys(templates) as Kind[];
  const subjects = new Map<Kind, string>();
  const made: string[] = [];
  try {
    for (const kind of kinds) {
      const id = await createTask(client, kind, `rounds-${kind}`);
      subjects.set(kind, id);
      made.push(id);
      await round(client, kind, id); // a warm-up round, unmeasured
    }
    // Interleaved, one round of each kind in turn, so the machine's load weighs on all alike.
    const results = new Map<Kind, Round[]>(kinds.map((k) => [k, []]));
    for (let i = 0; i < rounds; i++) {
      for (const kind of kinds) results.get(kind)!.push(await round(client, kind, subjects.get(kind)!));
    }
    const rows = kinds.map((kind) => {
      const r = results.get(kind)!;
      const resume = sorted(r.map((x) => x.resumeMs));
      const pause = sorted(r.map((x) => x.pauseMs));
      return {
        kind,
        'resume to answering p50 ms': round1(quantile(resume, 0.5)),
        'p99 ms': round1(quantile(resume, 0.99)),
        'pause to stopped p50 ms': round1(quantile(pause, 0.5)),
        'pause p99 ms': round1(quantile(pause, 0.99)),
        'paused task memory MiB (median)': round1(quantile(sorted(r.map((x) => x.pausedBytes)), 0.5) / 2 ** 20),
      };
    });
    const at = [];
    for (const kind of kinds) {
      const { ms, ids } = await resumeTogether(client, kind, together);
      made.push(...ids);
      at.push({ kind, [`${together} resumes at once, until all answer, ms`]: round1(ms) });
    }
    return { rounds, together, rows, atOnce: at };
  } finally {
    for (const id of made) await client.tasks.delete.mutate({ id }).catch(() => undefined);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { image, built } = await ensureDemoImage();
  console.log(`${built ? 'built' : 'found'} the demo image ${image}`);
  const token = `bench-${randomBytes(24).toString('hex')}`;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hiatus-bench-docker-'));
  try {
    await withDatabase(async (url) => {
      const server = await startServerProcess({
        ...benchServerEnv(url, token),
        HIATUS_PROVISIONER_POLL_MS: '20',
        HIATUS_PROVISIONER_DIR: dataDir,
      });
      try {
        const result = await dockerCosts(createHiatusClient({ url: server.url, token }));
        table(`pause and resume, ${result.rounds} rounds of each kind, interleaved`, result.rows);
        table(`${result.together} paused tasks resumed at once`, result.atOnce);
        const alone = await driverOnly(dataDir);
        table(`the docker driver alone, ${rounds} resumes of each`, alone);
        const out = path.join(import.meta.dirname, 'results', 'docker.json');
        await mkdir(path.dirname(out), { recursive: true });
        await writeFile(out, `${JSON.stringify({ node: process.version, image, ...result, alone }, null, 2)}\n`);
      } finally {
        await server.stop();
      }
    });
  } finally {
    // What the deletes did not remove (a failed run): the containers and volumes of this run's provisioner.
    const scope = await readFile(path.join(dataDir, 'docker', 'provisioner-id'), 'utf8').catch(() => null);
    if (scope) {
      const filters = { label: [`dev.hiatus.provisioner=${scope.trim()}`] };
      for (const c of await dockerClient().listContainers({ all: true, filters })) {
        await dockerClient().getContainer(c.Id).remove({ force: true });
      }
      for (const v of (await dockerClient().listVolumes({ filters })).Volumes ?? []) {
        await dockerClient().getVolume(v.Name).remove();
      }
    }
    await rm(dataDir, { recursive: true, force: true });
  }
}
