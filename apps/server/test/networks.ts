/**
 * Where the tests' agents listen: loopback, which the agent address policy refuses unless the
 * operator allows it. Apps built by the tests allow these; servers they start get the variable.
 */
export const loopbackNetworks: readonly string[] = ['127.0.0.0/8', '::1/128'];

/** `loopbackNetworks` as HIATUS_ALLOWED_AGENT_NETWORKS spells it. */
export const loopbackAllowList = loopbackNetworks.join(',');
