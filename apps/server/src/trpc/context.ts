import type { App } from '../app.ts';
import type { Principal } from '../auth/principals.ts';
import type { Logger } from '../logger.ts';

/**
 * A request's root context: who is asking. The services procedures use are kept beside it, not in
 * it, so the router's type (which the client SDK bundles) does not carry the server's database,
 * logger and agent types; the first middleware hands them to procedures (`servicesOf`).
 */
export type RequestContext = {
  readonly requestId: string;
  /** The key the request presented, once checked; null when it presented none or a bad one. */
  readonly principal: Principal | null;
  /** Why a presented key was refused, for the error message. */
  readonly authError: string | null;
  /** The key could not be checked at all: the database did not answer. */
  readonly authUnavailable?: boolean;
};

/** The limits a request's calls wait on or are refused by (see limits/). */
export type RequestLimits = {
  /** Waits until `keyId` has fewer calls running than its cap; the turn is held until the release. */
  takeTurn(keyId: string, signal?: AbortSignal): Promise<() => void>;
  /**
   * Waits for this request's place among the process's heavy reads (`app.heavyReads`), kept until
   * its response is written; `owner` is whose share it counts against, `what` names the call.
   */
  holdHeavyRead(owner: string, what: string): Promise<void>;
};

type Services = { app: App; log: Logger; limits: RequestLimits };

const servicesByContext = new WeakMap<object, Services>();

export function createRequestContext(services: Services, identity: RequestContext): RequestContext {
  const context = { ...identity };
  servicesByContext.set(context, services);
  return context;
}

/** The services of a root context made by `createRequestContext`. */
export function servicesOf(context: object): Services {
  const services = servicesByContext.get(context);
  if (!services) throw new Error('no services for this context: make it with createRequestContext');
  return services;
}
