// Which hosts Gatehouse's server may call for an application that registered itself: public ones only, so that a
// registration cannot make it call into its own network (SSRF). Checked on the URI's text at registration, and on
// the address each connection actually goes to when it is made (a name can resolve anywhere, and change).
import { lookup as resolve, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The special-purpose ranges (IANA's IPv4 and IPv6 registries, RFC 6890) where no public service is: private,
 * loopback, link-local (cloud metadata), shared, benchmarking, documentation, multicast, reserved. For IPv6 that is
 * everything outside global unicast (2000::/3) and the special blocks inside it. Two lists: a BlockList checks an
 * IPv4 address against its IPv6 rules too (as ::ffff:a.b.c.d, inside ::/3).
 */
const SPECIAL_PURPOSE = { ipv4: new BlockList(), ipv6: new BlockList() };
for (const [network, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) SPECIAL_PURPOSE.ipv4.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 3], ['4000::', 2], ['8000::', 1], ['2001::', 23], ['2001:db8::', 32], ['3fff::', 20],
] as const) SPECIAL_PURPOSE.ipv6.addSubnet(network, prefix, 'ipv6');

/** Names that are never a public host's (RFC 6761, RFC 8375 and common private suffixes). */
const PRIVATE_NAME = /(^|\.)(localhost|local|internal|home\.arpa)$/;

/** Whether an IP address (without brackets) is one a public service may be at. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  // A scoped address (fe80::1%eth0) is on a link of this machine's.
  if (!family || address.includes('%')) return false;
  if (family === 4) return !SPECIAL_PURPOSE.ipv4.check(address, 'ipv4');
  // An IPv6 address that carries an IPv4 one reaches that one: it is as public as the address it carries.
  const carried = carriedIPv4(address);
  return carried ? isPublicAddress(carried) : !SPECIAL_PURPOSE.ipv6.check(address, 'ipv6');
}

/**
 * Why a URL's host (URL.hostname: an IPv6 literal in brackets) is not one Gatehouse may call, or undefined: a
 * non-public address literal, a single-label name (resolved by the local network's search domains), a name with a
 * trailing dot (the same name, said so that suffix checks miss it), or a private name. A name is judged by its
 * text only here; the address it resolves to is checked when the connection is made (publicAddressesOnly).
 */
export function publicHostProblem(hostname: string): string | undefined {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (isIP(host)) return isPublicAddress(host) ? undefined : `${host} is not a public address`;
  if (host.endsWith('.')) return `${host} ends with a dot`;
  if (!host.includes('.')) return `${host} is not a fully qualified name`;
  return PRIVATE_NAME.test(host) ? `${host} is a private name` : undefined;
}

/** A connection refused because it would go to an address that is not public. */
export class NonPublicAddress extends Error {
  override name = 'NonPublicAddress';

  constructor(host: string, address: string) {
    super(host === address ? `${address} is not a public address` : `${host} resolves to ${address}, not a public address`);
  }
}

/**
 * The `lookup` of a connection that may go to public addresses only (net.connect): resolves the name as usual and
 * fails with NonPublicAddress when any of its addresses is not public. Checked as the connection is made, so a name
 * that answers with a public address at one moment and a private one the next (DNS rebinding) gains nothing.
 * net.connect makes no lookup for an address literal: check one with refuseNonPublicAddressLiteral.
 */
export const publicAddressesOnly: LookupFunction = (hostname, options, callback) => {
  resolve(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '');
    const refused = addresses.find(({ address }) => !isPublicAddress(address));
    if (refused) return callback(new NonPublicAddress(hostname, refused.address), '');
    if (options.all) return callback(null, addresses);
    const [first] = addresses;
    return first ? callback(null, first.address, first.family) : callback(new NonPublicAddress(hostname, 'no address'), '');
  });
};

/** Throws NonPublicAddress when a URL's host is an address literal that is not public (no lookup is made for one). */
export function refuseNonPublicAddressLiteral(hostname: string): void {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) && !isPublicAddress(host)) throw new NonPublicAddress(host, host);
}

/** The IPv4 address an IPv6 one stands for: IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96) or 6to4 (2002::/16). */
function carriedIPv4(address: string): string | undefined {
  const words = ipv6Words(address);
  const zeros = (from: number, to: number) => words.slice(from, to).every((word) => word === 0);
  const mapped = zeros(0, 5) && words[5] === 0xffff;
  const nat64 = words[0] === 0x64 && words[1] === 0xff9b && zeros(2, 6);
  const [high, low] = mapped || nat64 ? [words[6], words[7]] : words[0] === 0x2002 ? [words[1], words[2]] : [];
  if (high === undefined || low === undefined) return undefined;
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** The eight 16-bit words of a valid IPv6 address (isIP said so), its `::` expanded and a dotted IPv4 tail read as two. */
function ipv6Words(address: string): number[] {
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_tail, a: string, b: string, c: string, d: string) => (
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`
  ));
  const [head = '', tail] = text.split('::');
  const read = (part: string | undefined) => (part ? part.split(':').map((word) => Number.parseInt(word, 16)) : []);
  const front = read(head);
  const back = read(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
