import Docker from 'dockerode';

/**
 * The Docker Engine this provisioner talks to: `DOCKER_HOST` when set (as the docker CLI reads
 * it), else `/var/run/docker.sock`. One client per process; each call opens its own connection.
 */
let client: Docker | undefined;
export function dockerClient(): Docker {
  client ??= new Docker();
  return client;
}

/** Where the client connects, for messages. */
export function dockerAddress(): string {
  return process.env.DOCKER_HOST || '/var/run/docker.sock';
}

/** An Engine error's HTTP status (404 no such container, 304 already stopped, 409 conflict), if it is one. */
export function dockerStatus(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** Whether the error says the Engine cannot be reached at all (no socket, refused, not allowed). */
export function engineUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ETIMEDOUT';
}

/** The Engine's own message (`No such image: x`), not dockerode's wrapping of it. */
export function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } }).json;
  if (typeof json?.message === 'string') return json.message;
  const message = (error as Error).message ?? String(error);
  return message.replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

/** Whether the Engine answers within `timeoutMs`; the reason when it does not. */
export async function dockerReachable(
  timeoutMs = 5_000,
): Promise<{ reachable: true } | { reachable: false; why: string }> {
  try {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([dockerClient().ping(), late]).finally(() => clearTimeout(timer));
    return { reachable: true };
  } catch (error) {
    return { reachable: false, why: `Docker is not reachable at ${dockerAddress()}: ${engineMessage(error)}` };
  }
}
