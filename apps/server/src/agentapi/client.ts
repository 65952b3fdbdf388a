import type { Dispatcher } from 'undici';
import { request } from 'undici';
import type { z } from 'zod';
import { AddressNotAllowedError } from '../net/url-policy.ts';
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
  /** The connection pool: it decides which addresses may be connected to (net/outbound-dispatcher.ts). */
  dispatcher: Dispatcher;
};

/**
 * Why a call to an agent failed: it could not be reached, answered garbage, answered too much, or
 * its address is one the operator does not allow.
 */
export type AgentFailure = 'unreachable' | 'bad_response' | 'too_large' | 'not_allowed';

/**
 * A failed call, said in Hiatus's words only: never the agent's own text (its answer could be
 * anything a URL points at), and the same words for every way a connection can fail (refused,
 * reset, no such host, not HTTP, TLS), so the message tells nothing about what listens where.
 */
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
 * A client for one agent's AgentAPI server. Every call has a timeout and a size limit, follows no
 * redirect, and validates what comes back, so a slow, dead or confused agent ends in an AgentError.
 * The URL's path is kept: an agent at `http://proxy/agents/7` is asked `/agents/7/messages`.
 */
export class AgentClient {
  /** `baseUrl` null: the workspace has not reported where its agent listens (it never started). */
  constructor(
    private readonly baseUrl: string | null,
    private readonly options: AgentClientOptions,
  ) {}

  /** `GET /messages`: the whole conversation, oldest first. */
  async messages(): Promise<AgentHistory> {
    const { body, bytes } = await this.request('GET', 'messages');
    return { messages: parse(messagesResponseSchema, body).messages as AgentMessage[], bytes };
  }

  /** `GET /status`: `running` while the agent works, `stable` when it waits for input. */
  async status(): Promise<AgentStatus> {
    const { body } = await this.request('GET', 'status');
    return parse(statusResponseSchema, body).status;
  }

  /** `POST /message` with a user message; true when the agent took it. */
  async sendMessage(content: string): Promise<boolean> {
    const { body } = await this.request('POST', 'message', { content, type: 'user' });
    return parse(postMessageResponseSchema, body).ok;
  }

  private async request(
    method: 'GET' | 'POST',
    endpoint: string,
    json?: unknown,
  ): Promise<{ body: unknown; bytes: number }> {
    if (this.baseUrl === null) {
      throw new AgentError('unreachable', 'the workspace has not reported an agent URL yet');
    }
    const url = endpointUrl(this.baseUrl, endpoint);
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    let text: Buffer;
    try {
      const response = await request(url, {
        method,
        signal,
        dispatcher: this.options.dispatcher,
        headers: json === undefined ? { accept: 'application/json' } : { 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      });
      if (response.statusCode < 200 || response.statusCode > 299) {
        discard(response.body);
        // A 5xx is an agent in trouble (as good as down); anything else, a redirect included, is not AgentAPI.
        const failure = response.statusCode >= 500 ? 'unreachable' : 'bad_response';
        throw new AgentError(failure, `the agent answered status ${response.statusCode}`);
      }
      text = await readLimited(response, this.options.maxBytes);
    } catch (error) {
      if (error instanceof AgentError) throw error;
      const refused = findRefusal(error);
      if (refused) throw new AgentError('not_allowed', refused.message, { cause: error });
      if (signal.aborted) {
        throw new AgentError('unreachable', `the agent did not answer within ${this.options.timeoutMs} ms`, {
          cause: error,
        });
      }
      throw new AgentError('unreachable', 'the agent is unreachable', { cause: error });
    }
    try {
      // Invalid UTF-8 is replaced with U+FFFD, as AgentAPI's own (Go) JSON encoder does, rather
      // than costing the task its snapshot. JSON.parse is iterative (no depth overflows it); the
      // schemas bound the depth of what is kept, without recursion (schema.ts, extraFieldsProblem).
      return { body: JSON.parse(text.toString('utf8')), bytes: text.byteLength };
    } catch {
      throw new AgentError('bad_response', "the agent's answer is not AgentAPI's (not JSON)");
    }
  }
}

/**
 * `endpoint` under the agent's base URL, its path kept (`http://proxy/agents/7` and
 * `http://proxy/agents/7/` both give `http://proxy/agents/7/messages`), its query too.
 */
function endpointUrl(baseUrl: string, endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new AgentError('not_allowed', "the agent's address is not allowed: the agent URL is not a URL");
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') {
    throw new AgentError('not_allowed', "the agent's address is not allowed: only http(s) URLs without credentials");
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${endpoint}`;
  url.hash = '';
  return url;
}

/** The policy's refusal behind a failed connection, if that is why it failed. */
function findRefusal(error: unknown): AddressNotAllowedError | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof AddressNotAllowedError) return e;
  }
  return undefined;
}

async function readLimited(response: Dispatcher.ResponseData, maxBytes: number): Promise<Buffer> {
  const declared = Number(response.headers['content-length'] ?? Number.NaN);
  const tooLarge = () => new AgentError('too_large', `the agent's answer is larger than ${maxBytes} bytes`);
  if (declared > maxBytes) {
    discard(response.body);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    total += (chunk as Buffer).byteLength;
    if (total > maxBytes) {
      discard(response.body);
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** Stops reading an answer: its connection is closed, and the abort this raises is nobody's error. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** AgentAPI's field names: the only names of the agent's own a validation error may repeat. */
const knownFields = new Set(['messages', 'id', 'role', 'content', 'time', 'status', 'agent_type', 'ok', 'type']);

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body);
  if (!result.success) {
    const first = result.error.issues[0];
    // Our validation's words, at a path of indices and AgentAPI's names: never a name or a value
    // of the agent's (an unknown key is only "unknown fields").
    const path = first?.path.map((p) => (typeof p === 'number' || knownFields.has(String(p)) ? String(p) : '…'));
    const what = first?.code === 'unrecognized_keys' ? 'unknown fields' : first?.message;
    const at = first ? `${path?.join('.') || '(root)'}: ${what}` : 'unexpected shape';
    throw new AgentError('bad_response', `the agent's answer is not AgentAPI's (${at})`);
  }
  return result.data;
}
