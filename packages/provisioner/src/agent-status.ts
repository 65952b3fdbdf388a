import { setTimeout as sleep } from 'node:timers/promises';
import { defaults } from './defaults.ts';

/** Whether the agent answered, and if not what the last try saw (for the error message). */
export type AgentWait = { ready: true } | { ready: false; lastTry: string };

/**
 * Polls `GET <agentUrl>/status` until it answers 200 with an AgentAPI status (`running` or
 * `stable`), `timeoutMs` passes, or `signal` aborts.
 */
export async function waitForAgent(agentUrl: string, timeoutMs: number, signal?: AbortSignal): Promise<AgentWait> {
  const deadline = Date.now() + timeoutMs;
  let lastTry = 'no answer yet';
  while (!signal?.aborted) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    // One try may not eat the whole wait: an agent that accepts but never answers is tried again.
    const timeout = AbortSignal.timeout(Math.min(defaults.statusRequestTimeoutMs, left));
    try {
      const response = await fetch(`${agentUrl}/status`, {
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      const text = await response.text();
      if (response.status === 200 && isAgentStatus(text)) return { ready: true };
      lastTry = `answered ${response.status} ${text.slice(0, 200)}`;
    } catch (error) {
      lastTry = describeFetchError(error);
    }
    await sleep(Math.min(defaults.statusPollMs, Math.max(0, deadline - Date.now())), undefined, { signal }).catch(
      () => undefined,
    );
  }
  return { ready: false, lastTry };
}

function isAgentStatus(text: string): boolean {
  try {
    const status = (JSON.parse(text) as { status?: unknown } | null)?.status;
    return status === 'running' || status === 'stable';
  } catch {
    return false;
  }
}

/** fetch hides the reason in `cause`: "connection refused" reads better than "fetch failed". */
function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if ((error as Error).name === 'TimeoutError') return 'the request timed out';
  return cause?.code ?? (error as Error).message;
}
