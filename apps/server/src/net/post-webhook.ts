import { type Dispatcher, request } from 'undici';
import { AddressNotAllowedError } from './url-policy.ts';

export type WebhookPost = { body: string; headers: Record<string, string>; timeoutMs: number };

/**
 * POSTs a webhook delivery through `dispatcher` (which holds the address policy) and answers the
 * endpoint's status. No redirect is followed (undici's `request` never does: a 3xx is a status
 * like any other) and the answer's body is never read beyond a little, never shown. Failures are
 * in Hiatus's words, the same for every kind of connection failure.
 */
export async function postWebhook(dispatcher: Dispatcher, url: string, post: WebhookPost): Promise<number> {
  const signal = AbortSignal.timeout(post.timeoutMs);
  try {
    const response = await request(url, { method: 'POST', signal, dispatcher, headers: post.headers, body: post.body });
    // The body says nothing we keep: let the connection go back to the pool.
    response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    return response.statusCode;
  } catch (error) {
    for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
      if (e instanceof AddressNotAllowedError) throw new Error(e.message, { cause: error });
    }
    if (signal.aborted) throw new Error(`the endpoint did not answer within ${post.timeoutMs} ms`, { cause: error });
    throw new Error('the endpoint is unreachable', { cause: error });
  }
}
