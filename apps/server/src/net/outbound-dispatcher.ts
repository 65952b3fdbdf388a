import type { LookupFunction } from 'node:net';
// undici (Node's own HTTP client, as a package so its connect hook is ours to set): the policy is
// applied where the socket is opened, to the very address it is opened to.
import { Agent, buildConnector, type Dispatcher } from 'undici';
import { isIpLiteral, type OutboundAddressPolicy } from './url-policy.ts';

export type OutboundDispatcherOptions = {
  /** Longest wait for a connection; the client's own timeout bounds the whole answer anyway. */
  connectTimeoutMs: number;
};

/**
 * An HTTP connection pool for outbound calls (users' agents, webhook endpoints). With a policy, every connection is checked where it is
 * opened: a literal address before connecting, a host name by a lookup that resolves it, checks
 * every address and hands only those to the socket, so the address connected to is the one that
 * was checked (a name that changes its answer between the task's creation and the connection,
 * DNS rebinding, gains nothing). Without a policy nothing is checked. Either way the client
 * follows no redirect: undici's `request` never does.
 */
export function createOutboundDispatcher(
  policy: OutboundAddressPolicy | null,
  options: OutboundDispatcherOptions,
): Dispatcher {
  const connector = buildConnector({
    timeout: options.connectTimeoutMs,
    ...(policy ? { lookup: checkedLookup(policy) } : {}),
  });
  const connect: buildConnector.connector = (target, callback) => {
    if (policy && isIpLiteral(target.hostname)) {
      const refused = policy.refusal(target.hostname, target.hostname);
      if (refused) return callback(policy.notAllowed(refused), null);
    }
    connector(target, callback);
  };
  return new Agent({ connect });
}

/** A `lookup` for `net.connect` that answers only with addresses the policy allows. */
function checkedLookup(policy: OutboundAddressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    policy.resolve(hostname).then(
      (addresses) => {
        const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
        const wanted = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses;
        const first = wanted[0];
        if (!first)
          return callback(Object.assign(new Error(`${hostname} has no such address`), { code: 'ENOTFOUND' }), '');
        if (options.all) callback(null, wanted);
        else callback(null, first.address, first.family);
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}
