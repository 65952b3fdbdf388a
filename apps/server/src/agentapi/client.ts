import type { z } from 'zod';
import {
  type AgentMessage,
  type AgentStatus,
  messagesResponseSchema,
  postMessageResponseSchema,
  statusResponseSchema,
} from './schema.ts';

export type AgentClientOptions = {
  /** Longest wait for a whole answer, headers and body. */
  timeoutMs: number;
  /** Largest answer body accepted, in bytes. */
  maxBytes: number;
};

/** Why a call to an agent failed: it could not be reached, answered garbage, or answered too much. */
export type AgentFailure = 'unreachable' | 'bad_response' | 'too_large';

export class AgentError extends Error {
  override name = 'AgentError';
  constructor(
    readonly failure: AgentFailure,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The conversation as received: the raw bytes' size and the validated messages. */
export type AgentHistory = { messages: AgentMessage[]; bytes: number };

/**
 * A client for one agent's AgentAPI server. Every call has a timeout and a size limit, and
 * validates what comes back, so a slow, dead or confused agent ends in an AgentError.
 */
export class AgentClient {
  /** `baseUrl` null: the workspace has not reported where its agent listens (it never started). */
  constructor(
    private readonly baseUrl: string | null,
    private readonly options: AgentClientOptions,
  ) {}

  /** `GET /messages`: the whole conversation, oldest first. */
  async messages(): Promise<AgentHistory> {
    const { body, bytes } = await this.request('GET', '/messages');
    return { messages: parse(messagesResponseSchema, body, '/messages').messages as AgentMessage[], bytes };
  }

  /** `GET /status`: `running` while the agent works, `stable` when it waits for input. */
  async status(): Promise<AgentStatus> {
    const { body } = await this.request('GET', '/status');
    return parse(statusResponseSchema, body, '/status').status;
  }

  /** `POST /message` with a user message; true when the agent took it. */
  async sendMessage(content: string): Promise<boolean> {
    const { body } = await this.request('POST', '/message', { content, type: 'user' });
    return parse(postMessageResponseSchema, body, '/message').ok;
  }

  private async request(
    method: 'GET' | 'POST',
    path: string,
    json?: unknown,
  ): Promise<{ body: unknown; bytes: number }> {
    if (this.baseUrl === null) {
      throw new AgentError('unreachable', `${method} ${path}: the workspace has not reported an agent URL yet`);
    }
    const url = new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`);
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    const where = `${method} ${url.href}`;
    try {
      const response = await fetch(url, {
        method,
        signal,
        headers: json === undefined ? { accept: 'application/json' } : { 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
      const text = await readLimited(response, this.options.maxBytes, where);
      if (!response.ok) {
        const failure = response.status >= 500 ? 'unreachable' : 'bad_response';
        throw new AgentError(failure, `${where} answered ${response.status}: ${problemDetail(text)}`);
      }
      try {
        return { body: JSON.parse(text.toString('utf8')), bytes: text.byteLength };
      } catch {
        throw new AgentError('bad_response', `${where} answered something that is not JSON`);
      }
    } catch (error) {
      if (error instanceof AgentError) throw error;
      if (signal.aborted) {
        throw new AgentError('unreachable', `${where} did not answer within ${this.options.timeoutMs} ms`, {
          cause: error,
        });
      }
      const cause = (error as Error).cause as { code?: string; message?: string } | undefined;
      const detail = cause?.code ?? cause?.message ?? (error as Error).message;
      throw new AgentError('unreachable', `${where} failed: ${detail}`, { cause: error });
    }
  }
}

async function readLimited(response: Response, maxBytes: number, where: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  const tooLarge = () => new AgentError('too_large', `${where} answered more than the limit of ${maxBytes} bytes`);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      total += chunk.byteLength;
      if (total > maxBytes) {
        await response.body.cancel().catch(() => undefined);
        throw tooLarge();
      }
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks, total);
}

function parse<S extends z.ZodType>(schema: S, body: unknown, path: string): z.infer<S> {
  const result = schema.safeParse(body);
  if (!result.success) {
    const first = result.error.issues[0];
    const at = first ? `${first.path.join('.') || '(root)'}: ${first.message}` : 'unexpected shape';
    throw new AgentError('bad_response', `${path} answered a body that is not AgentAPI's: ${at}`);
  }
  return result.data;
}

function problemDetail(body: Buffer): string {
  const text = body.toString('utf8', 0, Math.min(body.byteLength, 500));
  try {
    const problem = JSON.parse(text) as { detail?: unknown; title?: unknown };
    return String(problem.detail ?? problem.title ?? text);
  } catch {
    return text || '(empty body)';
  }
}
