// What the noisy-neighbour test (noisy.test.ts) and bench (bench/noisy.ts) share: a server with its
// default limits, a victim and a flooder with a task each (the flooder's with a 30 MB snapshot),
// raw keep-alive calls with one key, a process's memory, and tRPC batch paths.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { apiClient } from './api-client.ts';
import { FakeAgent } from './fake-agent.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

const adminToken = 'noisy-neighbours-admin-token-0123456789abcdef';
/** The flooder's snapshot: about 30 MB, as in the report. */
const snapshotMessages = 300;
const snapshotMessageBytes = 100_000;

export type Neighbour = { key: string; taskId: string };
export type NoisyNeighbours = {
  server: ServerProcess;
  victim: Neighbour;
  flooder: Neighbour;
  stop(): Promise<void>;
};

/**
 * A server process on the database `env` names, with its default limits but for the share of time
 * in whole-snapshot reads: so tight (1 ms a second) that once the flooder has spent its burst, it
 * reads next to nothing more. Then two members, each with a task, the flooder's holding a 30 MB
 * snapshot pushed as its workspace would.
 */
export async function startNoisyNeighbours(env: Record<string, string>): Promise<NoisyNeighbours> {
  const server = await startServerProcess({
    ...env,
    HIATUS_ADMIN_TOKEN: adminToken,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    HIATUS_DEMO_TEMPLATE: 'false',
    HIATUS_HEAVY_READ_MS_PER_SECOND: '1',
    // (info: the harness waits for the "listening" line)
    LOG_LEVEL: 'info',
  });
  const agent = (await new FakeAgent().start()).say(6);
  try {
    const admin = apiClient(server.url, adminToken);
    const member = async (username: string): Promise<Neighbour> => {
      const user = await admin.users.create.mutate({ username });
      const { key } = await admin.apiKeys.create.mutate({ userId: user.id });
      const { task } = await apiClient(server.url, key).tasks.create.mutate({
        name: `${username}-task`,
        prompt: 'p',
        agentUrl: agent.url,
        sendPrompt: false,
      });
      return { key, taskId: task.id };
    };
    const victim = await member('victim');
    const flooder = await member('flooder');
    const messages = Array.from({ length: snapshotMessages }, (_, id) => ({
      id,
      role: id % 2 === 0 ? ('user' as const) : ('agent' as const),
      content: `message ${id} `.padEnd(snapshotMessageBytes, 'x'),
      time: new Date(Date.UTC(2026, 0, 1, 0, 0, id)).toISOString(),
    }));
    const pushed = await apiClient(server.url, flooder.key).snapshots.push.mutate({ taskId: flooder.taskId, messages });
    if (!pushed.stored) throw new Error(`the snapshot was not stored: ${pushed.reason}`);
    return {
      server,
      victim,
      flooder,
      stop: async () => {
        await server.stop();
        await agent.stop();
      },
    };
  } catch (error) {
    await server.stop();
    await agent.stop();
    throw error;
  }
}

/** A tRPC batch path (GET, as httpBatchLink sends queries) calling every path of `paths`, each with `input`. */
export function batchPath(paths: string[], input?: unknown): string {
  const query = new URLSearchParams({ batch: '1' });
  if (input !== undefined) {
    query.set('input', JSON.stringify(Object.fromEntries(paths.map((_, i) => [i, { json: input }]))));
  }
  return `${paths.join(',')}?${query}`;
}

/** `tasks.get` of `taskId`, as a path for `Calls`. */
export function taskGetPath(taskId: string): string {
  return `tasks.get?input=${encodeURIComponent(JSON.stringify({ json: { id: taskId } }))}`;
}

/** Raw keep-alive HTTP calls with one key: no client library between the caller and the server. */
export class Calls {
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

  close(): void {
    this.agent.destroy();
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.key}` };
  }
}

/** Samples a process's resident memory every 20 ms; `stop` answers the peak seen (or the kernel's high-water mark). */
export class MemoryWatch {
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
