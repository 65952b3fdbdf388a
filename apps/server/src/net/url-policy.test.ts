import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config.ts';
import {
  AddressNotAllowedError,
  agentUrlProblem,
  OutboundAddressPolicy,
  parseAllowance,
  type Resolver,
  specialAddress,
} from './url-policy.ts';

const strict = new OutboundAddressPolicy(parseAllowance([]));
const how = 'HIATUS_ALLOWED_AGENT_NETWORKS';

/** A resolver answering from a table, as DNS would; an unknown name does not resolve. */
function table(answers: Record<string, string[]>): Resolver {
  return async (host) => {
    const addresses = answers[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

describe('the agent address policy', () => {
  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['127.255.0.9', 'a loopback address'],
    ['::1', 'a loopback address'],
    ['10.1.2.3', 'a private address'],
    ['172.16.0.1', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['fd12:3456::1', 'a private (unique local) address'],
    ['169.254.1.1', 'a link-local address'],
    ['fe80::1', 'a link-local address'],
    ['0.0.0.0', 'the unspecified address'],
    ['::', 'the unspecified address'],
    ['100.64.0.1', 'a carrier-grade NAT address'],
    ['224.0.0.1', 'a multicast address'],
    ['ff02::1', 'a multicast address'],
    ['255.255.255.255', 'the broadcast address'],
    ['240.0.0.1', 'a reserved address'],
    ['192.0.2.1', 'a reserved address'],
    ['2001:db8::1', 'a reserved address'],
    ['::7f00:1', 'a reserved address'], // IPv4-compatible: outside 2000::/3
    ['169.254.169.254', 'a cloud metadata address'],
    ['fd00:ec2::254', 'a cloud metadata address'],
    ['100.100.100.200', 'a cloud metadata address'],
    ['168.63.129.16', 'a cloud metadata address'],
    // IPv6 spellings of IPv4 addresses are judged by the IPv4 address they stand for.
    ['::ffff:127.0.0.1', 'a loopback address'],
    ['::ffff:a9fe:a9fe', 'a cloud metadata address'],
    ['64:ff9b::10.0.0.1', 'a private address'],
    ['2002:7f00:1::', 'a loopback address'],
  ])('refuses %s as %s', (address, words) => {
    expect(specialAddress(address)).toBe(words);
    expect(strict.refusal(address, address)).toContain(words);
    expect(strict.refusal(address, address)).toContain(how);
  });

  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('allows the public %s', (address) => {
    expect(specialAddress(address)).toBeNull();
    expect(strict.refusal(address, address)).toBeNull();
  });

  it.each([
    ['http://127.0.0.1:3284', 'loopback'],
    ['http://0x7f.1/', 'loopback'],
    ['http://2130706433/', 'loopback'],
    ['http://017700000001/', 'loopback'],
    ['http://127.1/', 'loopback'],
    ['http://[::ffff:127.0.0.1]/', 'loopback'],
    ['http://[::1]:80/', 'loopback'],
    ['http://[::]/', 'unspecified'],
    ['http://0.0.0.0:3284/', 'unspecified'],
    ['http://169.254.169.254/latest/meta-data/', 'metadata'],
    ['http://[fd00:ec2::254]/', 'metadata'],
    ['http://100.100.100.200/', 'metadata'],
    ['https://10.0.0.5/', 'private'],
  ])('refuses a task at %s, in every spelling of the address', async (url, words) => {
    const refusal = await strict.refusalForUrl(url);
    expect(refusal).toMatch(/^the agent's address is not allowed: /);
    expect(refusal).toContain(words);
  });

  it('checks what a host name resolves to: localhost is refused, unless allowed by name or network', async () => {
    const resolve = table({ localhost: ['127.0.0.1'], 'agents.example': ['93.184.216.34'] });
    const policy = (allow: string[]) => new OutboundAddressPolicy(parseAllowance(allow), { resolve });
    expect(await policy([]).refusalForUrl('http://localhost:3284')).toBe(
      `the agent's address is not allowed: localhost resolves to a loopback address (${how} can allow it)`,
    );
    expect(await policy(['localhost']).refusalForUrl('http://localhost:3284')).toBeNull();
    expect(await policy(['LocalHost.']).refusalForUrl('http://LOCALHOST:3284')).toBeNull();
    expect(await policy(['127.0.0.0/8']).refusalForUrl('http://localhost:3284')).toBeNull();
    expect(await policy(['127.0.0.1']).refusalForUrl('http://localhost:3284')).toBeNull();
    expect(await policy(['10.0.0.0/8']).refusalForUrl('http://localhost:3284')).toMatch(/loopback/);
    expect(await policy([]).refusalForUrl('http://agents.example/')).toBeNull();
  });

  it('uses the system resolver by default: localhost is refused', async () => {
    expect(await strict.refusalForUrl('http://localhost:3284')).toMatch(/localhost resolves to a loopback address/);
  });

  it('refuses a name when any of its addresses is refused', async () => {
    const resolve = table({ mixed: ['93.184.216.34', '10.0.0.1'] });
    const policy = new OutboundAddressPolicy(parseAllowance([]), { resolve });
    await expect(policy.resolve('mixed')).rejects.toBeInstanceOf(AddressNotAllowedError);
    expect(await policy.refusalForUrl('http://mixed/')).toMatch(/mixed resolves to a private address/);
  });

  it('refuses a host that does not resolve, or not in time', async () => {
    const policy = new OutboundAddressPolicy(parseAllowance([]), { resolve: table({}) });
    expect(await policy.refusalForUrl('http://nowhere.example/')).toBe(
      "the agent URL's host nowhere.example does not resolve to an address",
    );
    const slow = new OutboundAddressPolicy(parseAllowance([]), {
      resolve: () => new Promise(() => undefined),
      resolveTimeoutMs: 50,
    });
    expect(await slow.refusalForUrl('http://slow.example/')).toMatch(/does not resolve/);
  });

  it('keeps cloud metadata addresses refused inside an allowed network, unless named alone', async () => {
    const wide = new OutboundAddressPolicy(parseAllowance(['169.254.0.0/16', '100.64.0.0/10', 'metadata.internal']), {
      resolve: table({ 'metadata.internal': ['169.254.169.254'] }),
    });
    expect(wide.refusal('169.254.1.1', '169.254.1.1')).toBeNull();
    expect(wide.refusal('100.64.0.1', '100.64.0.1')).toBeNull();
    expect(wide.refusal('169.254.169.254', '169.254.169.254')).toMatch(/cloud metadata address/);
    expect(wide.refusal('100.100.100.200', '100.100.100.200')).toMatch(/cloud metadata address/);
    expect(await wide.refusalForUrl('http://metadata.internal/')).toMatch(/cloud metadata address/);
    const named = new OutboundAddressPolicy(parseAllowance(['169.254.169.254/32']));
    expect(named.refusal('169.254.169.254', '169.254.169.254')).toBeNull();
  });

  it('lets an IPv4 network hold the IPv6 spellings of its addresses, and IPv6 networks their own', () => {
    const policy = new OutboundAddressPolicy(parseAllowance(['127.0.0.0/8', 'fd00::/8']));
    expect(policy.refusal('::ffff:7f00:1', '::ffff:7f00:1')).toBeNull();
    expect(policy.refusal('fd12::1', 'fd12::1')).toBeNull();
    expect(policy.refusal('::1', '::1')).toMatch(/loopback/);
  });

  it('reads the allow list strictly: a bad entry is named', () => {
    expect(parseAllowance(['10.0.0.0/8', '::1/128', '127.0.0.1', 'agents.internal']).networks).toHaveLength(3);
    for (const bad of ['10.0.0.0/33', '::1/129', '10.0.0.0/8/1', '127.1', '0x7f.0.0.1', 'under_score-.', 'a b']) {
      expect(() => parseAllowance([bad]), bad).toThrow(`"${bad}" is not a CIDR, an IP address or a host name`);
    }
  });

  it.each([
    ['http://agent:3284/', null],
    ['https://proxy/agents/7', null],
    ['HTTP://agent/', 'must start with http:// or https:// (in lowercase)'],
    ['Https://agent/', 'must start with http:// or https:// (in lowercase)'],
    ['http://user:secret@agent/', 'must not carry credentials (user:password@)'],
    ['http://user@agent/', 'must not carry credentials (user:password@)'],
    ['not a url', 'must be an http(s) URL'],
    ['ftp://agent/', 'must be an http(s) URL'],
  ])('judges the form of %s', (url, problem) => {
    expect(agentUrlProblem(url)).toBe(problem);
  });
});

describe('HIATUS_ALLOWED_AGENT_NETWORKS', () => {
  it('allows nothing beyond public addresses by default', () => {
    expect(loadConfig({}).settings.allowedAgentNetworks).toEqual([]);
  });

  it('reads comma-separated CIDRs, addresses and host names', () => {
    const config = loadConfig({ HIATUS_ALLOWED_AGENT_NETWORKS: ' 127.0.0.1/32, ::1/128 ,agents.internal,' });
    expect(config.settings.allowedAgentNetworks).toEqual(['127.0.0.1/32', '::1/128', 'agents.internal']);
  });

  it('refuses a bad entry at start, naming the variable', () => {
    const attempt = () => loadConfig({ HIATUS_ALLOWED_AGENT_NETWORKS: '10.0.0.0/8,10.0.0.0/40' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/HIATUS_ALLOWED_AGENT_NETWORKS: "10.0.0.0\/40" is not a CIDR/);
  });
});
