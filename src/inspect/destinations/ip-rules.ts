/**
 * Which IP addresses are private, and why: the IPv4 and IPv6 ranges that are not public internet
 * destinations (metadata endpoints, loopback, RFC 1918, CGNAT, transition formats, ...), the
 * closed list of reasons, and how several verdicts combine into one.
 */
import { isIP } from 'node:net';

/** Why a destination is private. Closed list: policies and dashboards match on these. */
export type DestinationReason =
  | 'metadata' // a cloud instance-metadata endpoint (169.254.169.254, fd00:ec2::254, metadata.google.internal, ...)
  | 'loopback' // 127/8, ::1, localhost, *.localhost
  | 'unspecified' // 0/8, :: (connecting to 0.0.0.0 reaches the local host on Linux)
  | 'link_local' // 169.254/16, fe80::/10
  | 'private' // 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10
  | 'cgnat' // 100.64/10 shared address space
  | 'internal_name' // a name that only resolves inside a network: single label, .internal, .local, .home.arpa, ...
  | 'nat64' // 64:ff9b:1::/48 local-use NAT64 (the translated address is not knowable)
  | 'teredo' // 2001::/32 whose embedded client address is public: still a tunnel, not a web host
  | 'ipv4_compatible' // ::a.b.c.d (deprecated, never routed)
  | 'multicast' // 224/4, ff00::/8
  | 'broadcast' // 255.255.255.255
  | 'reserved' // 240/4, 192.0.0/24, 2001::/23, 100::/64, anything outside 2000::/3, ...
  | 'benchmarking' // 198.18/15, 2001:2::/48
  | 'documentation' // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  | 'local_file' // file: URL with no host (or localhost): reads the tool's own filesystem
  | 'invalid_address' // a resolver answer that is not an IP address
  | 'unresolvable' // the name did not resolve (NXDOMAIN, error, timeout, empty answer)
  | 'limit_exceeded'; // more distinct names than maxDestinations: not looked up

/** The verdict on one address or name: private or not, and why. */
export interface AddressVerdict {
  private: boolean;
  reason: DestinationReason | null;
}

/** The most severe reason first: when a host has several private addresses, it is reported by the first. */
const SEVERITY: readonly DestinationReason[] = [
  'metadata',
  'loopback',
  'unspecified',
  'link_local',
  'private',
  'cgnat',
  'internal_name',
  'local_file',
  'nat64',
  'teredo',
  'ipv4_compatible',
  'multicast',
  'broadcast',
  'reserved',
  'benchmarking',
  'documentation',
  'invalid_address',
  'unresolvable',
  'limit_exceeded',
];

const PUBLIC: AddressVerdict = Object.freeze({ private: false, reason: null });

/** A private verdict with its reason. */
export function verdict(reason: DestinationReason): AddressVerdict {
  return { private: true, reason };
}

// ---------------------------------------------------------------------------------------------
// IPv4

function v4ToInt(dotted: string): number {
  const [a, b, c, d] = dotted.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** An IPv4 address as a 32-bit unsigned integer back to dotted text. */
export function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** [network, prefix length, reason], most specific first: the first match wins. */
const V4_RANGES: ReadonlyArray<readonly [number, number, DestinationReason]> = (
  [
    // Cloud metadata endpoints, before the ranges that contain them.
    ['169.254.169.254', 32, 'metadata'], // AWS, GCP, Azure, OCI, DigitalOcean, Hetzner, OpenStack
    ['169.254.170.2', 32, 'metadata'], // AWS ECS task credentials
    ['169.254.170.23', 32, 'metadata'], // AWS EKS Pod Identity agent
    ['100.100.100.200', 32, 'metadata'], // Alibaba Cloud
    ['192.0.0.192', 32, 'metadata'], // Oracle Cloud (legacy)
    ['168.63.129.16', 32, 'metadata'], // Azure WireServer / host agent
    ['255.255.255.255', 32, 'broadcast'],
    ['0.0.0.0', 8, 'unspecified'],
    ['127.0.0.0', 8, 'loopback'],
    ['10.0.0.0', 8, 'private'],
    ['172.16.0.0', 12, 'private'],
    ['192.168.0.0', 16, 'private'],
    ['169.254.0.0', 16, 'link_local'],
    ['100.64.0.0', 10, 'cgnat'],
    ['192.0.0.0', 24, 'reserved'], // IETF protocol assignments
    ['192.0.2.0', 24, 'documentation'],
    ['198.51.100.0', 24, 'documentation'],
    ['203.0.113.0', 24, 'documentation'],
    ['198.18.0.0', 15, 'benchmarking'],
    ['192.88.99.0', 24, 'reserved'], // deprecated 6to4 relay anycast
    ['224.0.0.0', 4, 'multicast'],
    ['240.0.0.0', 4, 'reserved'],
  ] as const
).map(([network, bits, reason]) => [v4ToInt(network), bits, reason] as const);

function classifyV4Int(n: number): AddressVerdict {
  for (const [network, bits, reason] of V4_RANGES) {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    if (((n & mask) >>> 0) === network) return verdict(reason);
  }
  return PUBLIC;
}

// ---------------------------------------------------------------------------------------------
// IPv6

/** Parses a canonical (WHATWG-serialised: hex groups, at most one `::`) IPv6 address into 8 groups. */
export function v6Groups(canonical: string): number[] | undefined {
  const halves = canonical.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const head = parse(halves[0] as string);
  const tail = halves.length === 2 ? parse(halves[1] as string) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? head.length !== 8 : fill < 1) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/** Validates and canonicalises an IPv6 literal (no brackets; a zone id is dropped). */
export function canonicalV6(text: string): string | undefined {
  const withoutZone = text.replace(/%.*$/s, '');
  if (isIP(withoutZone) !== 6) return undefined;
  try {
    return new URL(`http://[${withoutZone}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

function prefixMatches(groups: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const take = Math.min(16, bits);
    const mask = (0xffff << (16 - take)) & 0xffff;
    if (((groups[i] as number) & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

type Embedding = 'ipv4_mapped' | 'ipv4_compatible' | 'ipv4_translated' | 'nat64' | '6to4' | 'teredo';

/** The IPv4 address an IPv6 address carries, and how, for the transition formats that carry one. */
export function embeddedV4(groups: readonly number[]): { via: Embedding; v4: number } | undefined {
  const pair = (hi: number, lo: number): number => ((((groups[hi] as number) << 16) | (groups[lo] as number)) >>> 0);
  const zeros = (from: number, to: number): boolean => groups.slice(from, to).every((g) => g === 0);
  if (zeros(0, 5) && groups[5] === 0xffff) return { via: 'ipv4_mapped', v4: pair(6, 7) };
  if (zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0) return { via: 'ipv4_translated', v4: pair(6, 7) };
  if (zeros(0, 6) && pair(6, 7) > 1) return { via: 'ipv4_compatible', v4: pair(6, 7) };
  if (prefixMatches(groups, [0x64, 0xff9b], 96)) return { via: 'nat64', v4: pair(6, 7) };
  if (prefixMatches(groups, [0x2002], 16)) return { via: '6to4', v4: pair(1, 2) };
  if (prefixMatches(groups, [0x2001, 0x0000], 32)) return { via: 'teredo', v4: ~pair(6, 7) >>> 0 };
  return undefined;
}

const V6_METADATA = new Set(['fd00:ec2::254', 'fd00:ec2::23']);

function classifyV6(canonical: string): AddressVerdict {
  const groups = v6Groups(canonical);
  if (!groups) return verdict('invalid_address');
  if (groups.every((g) => g === 0)) return verdict('unspecified');
  if (groups.slice(0, 7).every((g) => g === 0) && groups[7] === 1) return verdict('loopback');
  const embedded = embeddedV4(groups);
  if (embedded) {
    const inner = classifyV4Int(embedded.v4);
    if (inner.private) return inner;
    // A public IPv4 address behind a translation that really routes there is that public host.
    if (embedded.via === 'ipv4_mapped' || embedded.via === 'nat64' || embedded.via === '6to4') return PUBLIC;
    if (embedded.via === 'ipv4_compatible') return verdict('ipv4_compatible');
    if (embedded.via === 'teredo') return verdict('teredo');
    return verdict('reserved');
  }
  if (prefixMatches(groups, [0x64, 0xff9b, 0x0001], 48)) return verdict('nat64');
  if (prefixMatches(groups, [0x2001, 0x0db8], 32) || prefixMatches(groups, [0x3fff], 20)) return verdict('documentation');
  if (prefixMatches(groups, [0x2001, 0x0002, 0x0000], 48)) return verdict('benchmarking');
  if (prefixMatches(groups, [0x2001], 23)) return verdict('reserved');
  if (prefixMatches(groups, [0xfe80], 10)) return verdict('link_local');
  if (prefixMatches(groups, [0xfec0], 10)) return verdict('private');
  if (V6_METADATA.has(canonical)) return verdict('metadata');
  if (prefixMatches(groups, [0xfc00], 7)) return verdict('private');
  if (prefixMatches(groups, [0xff00], 8)) return verdict('multicast');
  if (!prefixMatches(groups, [0x2000], 3)) return verdict('reserved');
  return PUBLIC;
}

/**
 * The canonical text of an IP address: dotted IPv4, compressed lowercase IPv6, IPv4-mapped IPv6
 * as the IPv4 address it is on the wire. Undefined when `ip` is not an IP address.
 */
export function canonicalIp(ip: string): string | undefined {
  const text = ip.trim().replace(/^\[(.*)\]$/s, '$1');
  if (isIP(text) === 4) return intToV4(v4ToInt(text));
  const v6 = canonicalV6(text);
  if (v6 === undefined) return undefined;
  const groups = v6Groups(v6);
  const embedded = groups && embeddedV4(groups);
  return embedded?.via === 'ipv4_mapped' ? intToV4(embedded.v4) : v6;
}

/**
 * Classifies one IP address (IPv4 dotted or IPv6, brackets and zone ids allowed). Any text that
 * is not an IP address in a form a resolver would return is `invalid_address`, private.
 */
export function classifyAddress(ip: string): AddressVerdict {
  const text = ip.trim().replace(/^\[(.*)\]$/s, '$1');
  if (isIP(text) === 4) return classifyV4Int(v4ToInt(text));
  const v6 = canonicalV6(text);
  return v6 === undefined ? verdict('invalid_address') : classifyV6(v6);
}

/** The most severe of several verdicts (see SEVERITY); public when none is private. */
export function mostSevere(verdicts: readonly AddressVerdict[]): AddressVerdict {
  let worst: AddressVerdict = PUBLIC;
  for (const v of verdicts) {
    if (!v.private || v.reason === null) continue;
    if (worst.reason === null || SEVERITY.indexOf(v.reason) < SEVERITY.indexOf(worst.reason)) worst = v;
  }
  return worst;
}
