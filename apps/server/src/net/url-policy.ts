import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
// ipaddr.js (maintained, no dependencies, used by Express's proxy-addr) parses every form of an
// address (dotted, IPv4-mapped, compressed IPv6) and knows the special ranges: a regex would not.
import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Network = [Address, number];

/** What the operator allows beyond public addresses (HIATUS_ALLOWED_AGENT_NETWORKS): networks and host names. */
export type AgentAllowance = { networks: Network[]; hosts: Set<string> };

/** An entry of the allow list that is neither a CIDR, an address nor a host name. */
export class AllowanceError extends Error {
  override name = 'AllowanceError';
}

/** What a policy guards connections to, in its words, and the variable that widens it. */
export type PolicySubject = { noun: string; variable: string };

const agentSubject: PolicySubject = { noun: 'agent', variable: 'HIATUS_ALLOWED_AGENT_NETWORKS' };
export const webhookSubject: PolicySubject = { noun: 'webhook endpoint', variable: 'HIATUS_ALLOWED_WEBHOOK_NETWORKS' };
export const driverAgentSubject: PolicySubject = { noun: 'template agent', variable: 'HIATUS_DRIVER_AGENT_NETWORKS' };

/** A connection the policy refuses; `reason` says why, in the policy's words. */
export class AddressNotAllowedError extends Error {
  override name = 'AddressNotAllowedError';
  constructor(
    readonly reason: string,
    subject: PolicySubject = agentSubject,
  ) {
    super(`the ${subject.noun}'s address is not allowed: ${reason}`);
  }
}

/**
 * Where the clouds answer with instance credentials. Refused even inside an allowed network,
 * unless the allow list names the address alone (a /32 or /128).
 */
const metadataAddresses: Address[] = [
  '169.254.169.254', // AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
  '169.254.170.2', // AWS ECS task metadata
  'fd00:ec2::254', // AWS over IPv6
  '100.100.100.200', // Alibaba Cloud
  '168.63.129.16', // Azure's wire server (a public address)
  '192.0.0.192', // Oracle Cloud's older metadata address
].map((text) => ipaddr.parse(text));

/** Every public IPv6 address is in 2000::/3; the rest is reserved, local, or not assigned. */
const globalUnicastV6: Network = ipaddr.parseCIDR('2000::/3');
/** NAT64's well-known prefix (RFC 6052): its addresses carry an IPv4 one in the last 32 bits. */
const nat64: Network = ipaddr.parseCIDR('64:ff9b::/96');

const metadataWords = 'a cloud metadata address';
const rangeWords: Record<string, string> = {
  loopback: 'a loopback address',
  private: 'a private address',
  uniqueLocal: 'a private (unique local) address',
  linkLocal: 'a link-local address',
  unspecified: 'the unspecified address',
  carrierGradeNat: 'a carrier-grade NAT address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
};

/**
 * Splits HIATUS_ALLOWED_AGENT_NETWORKS (`10.0.0.0/8, ::1/128, agents.internal`) into entries.
 */
export function splitAllowList(text: string): string[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

/**
 * The allow list's entries, parsed: a CIDR (`10.0.0.0/8`, `fd00::/8`), an address alone
 * (`127.0.0.1`, `::1`), or a host name (`agents.internal`, matched exactly, any case).
 * Throws an AllowanceError naming the first entry that is none of these.
 */
export function parseAllowance(entries: readonly string[]): AgentAllowance {
  const allowance: AgentAllowance = { networks: [], hosts: new Set() };
  for (const raw of entries) {
    const entry = raw.trim();
    const network = parseNetwork(entry);
    if (network) allowance.networks.push(network);
    else if (isHostName(entry)) allowance.hosts.add(normalHost(entry));
    else throw new AllowanceError(`"${entry}" is not a CIDR, an IP address or a host name`);
  }
  return allowance;
}

function parseNetwork(entry: string): Network | null {
  const [address = '', bits, ...rest] = entry.split('/');
  if (rest.length > 0 || !isStrictAddress(address)) return null;
  const parsed = ipaddr.parse(address);
  const max = parsed.kind() === 'ipv4' ? 32 : 128;
  if (bits === undefined) return [parsed, max];
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return null;
  return [parsed, Number(bits)];
}

/** A dotted-quad IPv4 or an IPv6 address: not the odd forms (`127.1`, `0x7f.1`) a reader would misread. */
function isStrictAddress(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || (text.includes(':') && ipaddr.IPv6.isValid(text));
}

function isHostName(entry: string): boolean {
  const labels = normalHost(entry).split('.');
  const label = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
  // A name whose last label is a number is read as an IPv4 address by URL parsers: not a name.
  const numericLast = /^(0x[0-9a-f]*|\d+)$/.test(labels.at(-1) ?? '');
  return entry.length <= 253 && !numericLast && labels.every((l) => label.test(l));
}

function normalHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/** The IPv4 address inside an IPv6 one that stands for it (mapped, translated, NAT64, 6to4), if any. */
function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | null {
  const p = address.parts;
  const v4 = (high: number, low: number) => new ipaddr.IPv4([high >> 8, high & 255, low >> 8, low & 255]);
  const range = address.range();
  if (range === 'ipv4Mapped' || range === 'rfc6145' || address.match(nat64)) return v4(p[6]!, p[7]!);
  if (range === '6to4') return v4(p[1]!, p[2]!);
  return null;
}

/** What kind of address this is, in words, when it is not an ordinary public one; null for a public one. */
export function specialAddress(text: string): string | null {
  const parsed = ipaddr.parse(text);
  const inner = parsed.kind() === 'ipv6' ? embeddedIPv4(parsed as ipaddr.IPv6) : null;
  const address = inner ?? parsed;
  if (isMetadata(address)) return metadataWords;
  const range = address.range();
  if (range === 'unicast' && (address.kind() === 'ipv4' || address.match(globalUnicastV6))) return null;
  return rangeWords[range] ?? 'a reserved address';
}

function isMetadata(address: Address): boolean {
  return metadataAddresses.some((m) => m.kind() === address.kind() && m.toString() === address.toString());
}

/** Whether `network` holds `address` (an IPv4 network also holds the IPv6 forms of its addresses). */
function holds(network: Network, address: Address): boolean {
  const [base, bits] = network;
  if (base.kind() === address.kind()) return address.match(network);
  const inner = address.kind() === 'ipv6' ? embeddedIPv4(address as ipaddr.IPv6) : null;
  return inner !== null && base.kind() === 'ipv4' && inner.match([base, bits]);
}

/** A URL's host with its IPv6 brackets taken off. */
function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

/** Whether a server listening on `host` (its HOST setting) can be reached from this machine only. */
export function isLoopbackOnly(host: string): boolean {
  if (host === 'localhost') return true;
  return ipaddr.isValid(host) && ipaddr.parse(host).range() === 'loopback';
}

/** Whether `host` is an IP address written as one (a URL parser has already made it canonical). */
export function isIpLiteral(host: string): boolean {
  return ipaddr.isValid(bareHost(host));
}

export const notAnHttpUrl = 'must be an http(s) URL';

/**
 * What is wrong with an agent URL's form, or null: an http(s) URL written in lowercase, without
 * credentials (they would be stored and shown with the task). The address is the policy's business.
 */
export function agentUrlProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return notAnHttpUrl;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return notAnHttpUrl;
  if (!/^https?:\/\//.test(text)) return 'must start with http:// or https:// (in lowercase)';
  if (url.username !== '' || url.password !== '') return 'must not carry credentials (user:password@)';
  return null;
}

/** Resolves a host name to all its addresses, as the system does (`dns.lookup`, so /etc/hosts counts). */
export type Resolver = (host: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (host) => lookup(host, { all: true });

export type OutboundAddressPolicyOptions = {
  /** How host names are resolved; the system's by default (tests give their own). */
  resolve?: Resolver;
  /** Longest wait for a name to resolve when a task is created. */
  resolveTimeoutMs?: number;
  /** Whose addresses these are, for the refusals' words: a user's agent unless said. */
  subject?: PolicySubject;
  /**
   * Whether public addresses are allowed besides the allowance: yes for a user's agent and a
   * webhook; no for the agents drivers report, which may be only where the operator says.
   */
  publicAddresses?: boolean;
};

/**
 * Which addresses Hiatus may connect to for a user's agent or a webhook endpoint (see `subject`):
 * public addresses, and what the operator allows. Loopback, private, link-local, unspecified, carrier-grade NAT, multicast,
 * reserved and cloud metadata addresses are refused, in every spelling (`0x7f.1`, `2130706433`,
 * `::ffff:127.0.0.1`), because the check is made on the parsed or resolved address. With
 * `publicAddresses: false` (the agents drivers report) only what the operator allows is allowed.
 *
 * @example
 * const policy = new OutboundAddressPolicy(parseAllowance(['10.1.0.0/16', 'agents.internal']));
 * await policy.refusalForUrl('http://169.254.169.254/'); // 'the agent's address is not allowed: …'
 */
export class OutboundAddressPolicy {
  private readonly resolver: Resolver;
  private readonly resolveTimeoutMs: number;
  private readonly subject: PolicySubject;
  private readonly publicAddresses: boolean;

  constructor(
    private readonly allowance: AgentAllowance,
    options: OutboundAddressPolicyOptions = {},
  ) {
    this.resolver = options.resolve ?? systemResolver;
    this.resolveTimeoutMs = options.resolveTimeoutMs ?? 5_000;
    this.subject = options.subject ?? agentSubject;
    this.publicAddresses = options.publicAddresses ?? true;
  }

  /** Why a connection to `address`, made for a URL whose host is `host`, is refused; null when it is allowed. */
  refusal(address: string, host: string): string | null {
    const parsed = ipaddr.parse(bareHost(address));
    const special = specialAddress(bareHost(address));
    if (special === null && this.publicAddresses) return null;
    const named = this.allowance.hosts.has(normalHost(bareHost(host)));
    const networks = this.allowance.networks.filter((network) => holds(network, parsed));
    const what = isIpLiteral(host) ? `${bareHost(host)} is` : `${bareHost(host)} resolves to`;
    const how = `${this.subject.variable} can allow it`;
    if (special === metadataWords) {
      // Credentials live there: only an entry naming the address alone opens it.
      const alone = networks.some(([base, bits]) => bits === (base.kind() === 'ipv4' ? 32 : 128));
      return alone ? null : `${what} a cloud metadata address (only ${how} by naming that address alone)`;
    }
    if (named || networks.length > 0) return null;
    return `${what} ${special ?? 'a public address'} (${how})`;
  }

  /** The error for a refused connection, in this policy's words. */
  notAllowed(reason: string): AddressNotAllowedError {
    return new AddressNotAllowedError(reason, this.subject);
  }

  /** The host's addresses, each one checked; throws AddressNotAllowedError when one is refused. */
  async resolve(host: string): Promise<LookupAddress[]> {
    const addresses = isIpLiteral(host)
      ? [{ address: bareHost(host), family: ipaddr.parse(bareHost(host)).kind() === 'ipv4' ? 4 : 6 }]
      : await this.resolver(bareHost(host));
    if (addresses.length === 0) throw Object.assign(new Error(`${host} has no address`), { code: 'ENOTFOUND' });
    // One refused address refuses the name: a name that mixes public and private answers is not trusted.
    for (const { address } of addresses) {
      const refused = this.refusal(address, host);
      if (refused) throw this.notAllowed(refused);
    }
    return addresses;
  }

  /**
   * Checks a user's agent URL when a task is created: its form, then every address its host
   * resolves to. The refusal in words, or null. A host that does not resolve is refused too: a
   * task whose agent cannot be found is a mistake better told at once.
   */
  async refusalForUrl(text: string): Promise<string | null> {
    const problem = agentUrlProblem(text);
    if (problem) return `the ${this.subject.noun} URL ${problem}`;
    const host = new URL(text).hostname;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), this.resolveTimeoutMs);
    });
    try {
      await Promise.race([this.resolve(host), timeout]);
      return null;
    } catch (error) {
      if (error instanceof AddressNotAllowedError) return error.message;
      return `the ${this.subject.noun} URL's host ${bareHost(host)} does not resolve to an address`;
    } finally {
      clearTimeout(timer);
    }
  }
}
