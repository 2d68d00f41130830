/**
 * SSRF facts for tool calls: the hosts a tool call would reach, resolved, with a verdict on
 * whether each one is a private (non-public-internet) destination and why.
 *
 * Inspect never decides: this module produces `input.destinations` and the policy denies. It
 * fails closed in what it reports: a host it cannot resolve, a name that only exists inside a
 * network, an address outside the global unicast space, all come back `private: true` with a
 * reason, so a policy that denies on `private` denies them too, and a policy that wants to be
 * more lenient (for example on `unresolvable`) says so explicitly.
 *
 * What it does not do: it checks at decision time, the tool connects later. A name may resolve
 * differently then (DNS rebinding with a short TTL); only an egress proxy that pins the resolved
 * address closes that gap. Reporting a host as private when ANY of its addresses is private
 * narrows it (mixed answers are the usual rebinding trick).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

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

/**
 * How a numeric host was written. `dotted` (a.b.c.d) and `ipv6` are canonical; the others are the
 * spellings filters miss: decimal 2130706433, octal 0177.0.0.1, hex 0x7f000001, short 127.1,
 * mixed 0x7f.1, and IPv6 addresses that embed an IPv4 address.
 */
export type NumericForm =
  | 'dotted'
  | 'decimal'
  | 'octal'
  | 'hex'
  | 'short'
  | 'mixed'
  | 'ipv6'
  | 'ipv4_mapped'
  | 'ipv4_compatible'
  | 'ipv4_translated'
  | 'nat64'
  | '6to4'
  | 'teredo';

export interface Destination {
  /** JSON path in the tool arguments where the URL or host was found. */
  readonly path: string;
  /** The URL as scheme://host[:port]/path, without userinfo, query or fragment (they may hold secrets); null for a bare host. */
  readonly url: string | null;
  /** The canonical host: lowercase, IDNA A-label, numeric forms as dotted IPv4, IPv6 without brackets, no trailing dot. */
  readonly host: string;
  /** The explicit port, else the scheme's default for http(s)/ws(s)/ftp; null when unknown. */
  readonly port: number | null;
  /** Canonical IP addresses: the literal, or every resolver answer. IPv4-mapped IPv6 is shown as IPv4. */
  readonly addresses: readonly string[];
  /** True when the host is not a public internet destination (see DestinationReason). */
  readonly private: boolean;
  /** Why it is private; when several addresses are private, the most severe reason. Null when public. */
  readonly reason: DestinationReason | null;
  /** Set when the host was a numeric IP written in a non-canonical form (see NumericForm), else null. */
  readonly numeric_form: NumericForm | null;
}

export interface AddressVerdict {
  private: boolean;
  reason: DestinationReason | null;
}

export interface DestinationOptions {
  /** Resolves a name to IP addresses; injectable so tests never touch the network. Default: {@link defaultResolver}. */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** Per-lookup timeout; a lookup that takes longer is `unresolvable`. Default 2000 ms. */
  readonly timeoutMs?: number;
  /** The most distinct names looked up per call; further names are `limit_exceeded` (private). Default 32. */
  readonly maxDestinations?: number;
}

const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_MAX_DESTINATIONS = 32;
/** How deep nested JSON (including JSON inside string values) is walked. */
const MAX_DEPTH = 32;
/** How many levels of URLs inside URLs (open-redirect parameters) are followed. */
const MAX_NESTED_URL_DEPTH = 2;

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

function verdict(reason: DestinationReason): AddressVerdict {
  return { private: true, reason };
}

// ---------------------------------------------------------------------------------------------
// IPv4

function v4ToInt(dotted: string): number {
  const [a, b, c, d] = dotted.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

function intToV4(n: number): string {
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
function v6Groups(canonical: string): number[] | undefined {
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
function canonicalV6(text: string): string | undefined {
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
function embeddedV4(groups: readonly number[]): { via: Embedding; v4: number } | undefined {
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

// ---------------------------------------------------------------------------------------------
// Numeric hosts

type Radix = 8 | 10 | 16;

/** The WHATWG URL "IPv4 number parser" (which follows inet_aton): 0x → hex, leading 0 → octal. */
function parseV4Number(part: string): { value: number; radix: Radix } | undefined {
  if (part === '') return undefined;
  let digits = part;
  let radix: Radix = 10;
  if (/^0x/i.test(digits)) {
    digits = digits.slice(2);
    radix = 16;
  } else if (digits.length >= 2 && digits.startsWith('0')) {
    digits = digits.slice(1);
    radix = 8;
  }
  if (digits === '') return { value: 0, radix };
  const valid = radix === 16 ? /^[0-9a-f]+$/i : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!valid.test(digits)) return undefined;
  // Numbers beyond 2^53 lose precision; they are out of range anyway and fail the checks below.
  const value = radix === 10 ? Number(digits) : Number.parseInt(digits, radix);
  return { value, radix };
}

/** The WHATWG IPv4 parser, recording how the address was spelled. */
function parseV4(host: string): { ip: string; form: NumericForm } | undefined {
  const parts = host.split('.');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (parts.length > 4) return undefined;
  const numbers: Array<{ value: number; radix: Radix }> = [];
  for (const part of parts) {
    const parsed = parseV4Number(part);
    if (!parsed) return undefined;
    numbers.push(parsed);
  }
  const last = numbers[numbers.length - 1] as { value: number };
  if (numbers.slice(0, -1).some((n) => n.value > 255)) return undefined;
  if (last.value >= 256 ** (5 - numbers.length)) return undefined;
  let ipv4 = last.value;
  numbers.slice(0, -1).forEach((n, i) => {
    ipv4 += n.value * 256 ** (3 - i);
  });
  const radixes = new Set(numbers.map((n) => n.radix));
  let form: NumericForm;
  if (numbers.length === 4 && radixes.size === 1 && radixes.has(10)) form = 'dotted';
  else if (numbers.length === 1) form = radixes.has(16) ? 'hex' : radixes.has(8) ? 'octal' : 'decimal';
  else if (numbers.length === 4 && !(radixes.has(8) && radixes.has(16))) form = radixes.has(16) ? 'hex' : 'octal';
  else if (radixes.size === 1 && radixes.has(10)) form = 'short';
  else form = 'mixed';
  return { ip: intToV4(ipv4), form };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Canonicalises a host the way WHATWG URL and inet_aton parsers do and returns the IP address
 * when the host is numeric: 2130706433, 0x7f000001, 0177.0.0.1, 127.1, 0x7f.1, a trailing dot,
 * percent-encoding, full-width digits (IDNA mapping), [::ffff:127.0.0.1], [::ffff:7f00:1].
 * IPv4-mapped IPv6 comes back as the IPv4 address; other IPv6 addresses in canonical form with
 * the embedding (nat64, 6to4, ...) as `form`. Undefined for a name, or for something no URL
 * parser would accept as an address (1.2.3.256).
 */
export function parseNumericHost(host: string): { ip: string; form: NumericForm } | undefined {
  const text = safeDecode(host.trim());
  const bracketed = /^\[(.*)\]$/s.exec(text);
  if (bracketed || text.includes(':')) {
    const v6 = canonicalV6(bracketed ? (bracketed[1] as string) : text);
    if (v6 === undefined) return undefined;
    const groups = v6Groups(v6);
    const embedded = groups && embeddedV4(groups);
    if (!embedded) return { ip: v6, form: 'ipv6' };
    return { ip: embedded.via === 'ipv4_mapped' ? intToV4(embedded.v4) : v6, form: embedded.via };
  }
  // IDNA mapping turns full-width digits and ideographic full stops into ASCII before the IPv4
  // parser runs; NFKC plus the three dot variants is the part of that mapping numbers can use.
  const mapped = text.normalize('NFKC').replace(/[\u3002\uff0e\uff61]/g, '.').toLowerCase();
  const ours = parseV4(mapped);
  // Cross-check with the WHATWG host parser: if it reads an address where we did not, or a
  // different one, trust it (the parser the tool most likely uses) and call the form mixed.
  const whatwg = /^[^/\\?#@:\s]*$/.test(text) ? domainToASCII(text) : '';
  const whatwgIp = isIP(whatwg) === 4 ? whatwg : undefined;
  if (ours && (whatwgIp === undefined || whatwgIp === ours.ip)) return ours;
  if (whatwgIp) return { ip: whatwgIp, form: 'mixed' };
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Names

/** Names that resolve to a cloud metadata service (resolved by the platform's own DNS). */
const METADATA_NAMES = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'instance-data',
  'instance-data.ec2.internal',
  'metadata.tencentyun.com',
]);

/** Suffixes of names that exist only inside a network (RFC 6761/6762/8375, ICANN .internal, common LAN suffixes). */
const INTERNAL_SUFFIXES = ['internal', 'local', 'localdomain', 'home.arpa', 'lan', 'intranet', 'corp', 'home', 'private'];

function classifyName(name: string): AddressVerdict | undefined {
  if (METADATA_NAMES.has(name)) return verdict('metadata');
  if (name === 'localhost' || name.endsWith('.localhost')) return verdict('loopback');
  if (!name.includes('.')) return verdict('internal_name');
  if (INTERNAL_SUFFIXES.some((suffix) => name === suffix || name.endsWith(`.${suffix}`))) return verdict('internal_name');
  return undefined;
}

/** Canonical host text: WHATWG host parsing (percent-decoding, IDNA, lowercase), no trailing dot. */
function canonicalHost(raw: string): string | undefined {
  if (raw.trim() === '') return '';
  const numeric = parseNumericHost(raw);
  if (numeric) return numeric.ip;
  const decoded = safeDecode(raw.trim());
  if (/[\s/\\?#@[\]<>^|%:]/.test(decoded)) return undefined;
  const ascii = domainToASCII(decoded);
  if (ascii === '') return undefined;
  const name = ascii.replace(/\.+$/, '');
  return /^[a-z0-9_.-]+$/.test(name) && !name.includes('..') ? name : undefined;
}

// ---------------------------------------------------------------------------------------------
// Finding URLs and hosts in tool arguments

/** Schemes whose URLs name a network destination a tool could be made to reach. */
const URL_SCHEMES = new Set([
  'http', 'https', 'ws', 'wss', 'ftp', 'ftps', 'sftp', 'tftp', 'gopher', 'file', 'dict', 'ldap', 'ldaps',
  'smb', 'telnet', 'ssh', 'redis', 'rediss', 'mongodb', 'mysql', 'postgres', 'postgresql', 'amqp', 'mqtt',
]);

const DEFAULT_PORTS: Readonly<Record<string, number>> = { 'http:': 80, 'https:': 443, 'ws:': 80, 'wss:': 443, 'ftp:': 21 };

/** Keys whose string values are hosts or URLs even without a scheme (compared lowercased, without - and _). */
const HOST_KEY_SUFFIXES = ['url', 'urls', 'uri', 'uris', 'href', 'host', 'hosts', 'hostname', 'endpoint', 'endpoints', 'address', 'addr', 'domain', 'domains', 'ip', 'server'];

function isHostKey(key: string): boolean {
  const normalised = key.toLowerCase().replace(/[-_]/g, '');
  return HOST_KEY_SUFFIXES.some((suffix) => normalised.endsWith(suffix));
}

/** A URL in free text: scheme, then two slashes or backslashes in any mix. */
const URL_IN_TEXT = /\b([a-z][a-z0-9+.-]*):[/\\]{2}[^\s"'<>`{}|^]*/gi;

interface Candidate {
  readonly path: string;
  readonly url: string | null;
  readonly host: string;
  readonly port: number | null;
  readonly form: NumericForm | null;
  readonly file: boolean;
}

/**
 * The authority's host as one kind of parser reads it, written as it was: userinfo up to the
 * last '@' dropped, port dropped. `http://evil.com\\@127.0.0.1/` is host evil.com to WHATWG
 * (a backslash ends a special URL's authority) and 127.0.0.1 to RFC 3986 parsers (curl,
 * Python): both are checked. `whatwg-special` also skips any run of slashes and backslashes
 * after the scheme, as WHATWG does for http(s), ws(s) and ftp.
 */
function rawAuthorityHost(text: string, reading: 'rfc' | 'whatwg-special'): { host: string; port: number | null } | undefined {
  const start = (reading === 'rfc' ? /^[a-z][a-z0-9+.-]*:\/\//i : /^[a-z][a-z0-9+.-]*:[/\\]*/i).exec(text);
  if (!start) return undefined;
  const rest = text.slice(start[0].length);
  const end = rest.search(reading === 'rfc' ? /[/?#]/ : /[/\\?#]/);
  let authority = end < 0 ? rest : rest.slice(0, end);
  authority = authority.slice(authority.lastIndexOf('@') + 1);
  const v6 = /^(\[[^\]]*\])(?::(\d*))?$/.exec(authority);
  if (v6) return { host: v6[1] as string, port: v6[2] ? Number(v6[2]) : null };
  const colon = authority.lastIndexOf(':');
  if (colon >= 0 && /^\d*$/.test(authority.slice(colon + 1))) {
    const port = authority.slice(colon + 1);
    return { host: authority.slice(0, colon), port: port === '' ? null : Number(port) };
  }
  return { host: authority, port: null };
}

function displayUrl(url: URL): string {
  return `${url.protocol}${url.host === '' && url.protocol !== 'file:' ? '' : '//'}${url.host}${url.pathname}`;
}

function reportedForm(numeric: { form: NumericForm } | undefined): NumericForm | null {
  return numeric && numeric.form !== 'dotted' && numeric.form !== 'ipv6' ? numeric.form : null;
}

/**
 * Candidates for one URL string: the host WHATWG URL reads, plus the host an RFC 3986 parser
 * reads when that differs (parser differentials are the classic SSRF filter bypass). `bareHost`
 * marks a scheme-less value of a host-like key that was given an http:// prefix to parse: it
 * has no URL and no default port of its own.
 */
function urlCandidates(path: string, text: string, bareHost: boolean): Candidate[] {
  const candidates: Candidate[] = [];
  const add = (candidate: Candidate): void => {
    if (!candidates.some((c) => c.host === candidate.host)) candidates.push(candidate);
  };
  let parsed: URL | undefined;
  try {
    parsed = new URL(text);
  } catch {
    parsed = undefined;
  }
  const scheme = schemeOf(text) ?? '';
  const special = ['http', 'https', 'ws', 'wss', 'ftp'].includes(scheme);
  const whatwgRaw = rawAuthorityHost(text, special ? 'whatwg-special' : 'rfc');
  if (parsed) {
    const host = canonicalHost(parsed.hostname);
    if (host !== undefined) {
      // new URL() has already rewritten 0x7f.1 as 127.0.0.1: the form comes from the text as written.
      const numeric = whatwgRaw ? parseNumericHost(whatwgRaw.host) : undefined;
      const explicitPort = parsed.port === '' ? null : Number(parsed.port);
      add({
        path,
        url: bareHost ? null : displayUrl(parsed),
        host,
        port: explicitPort ?? (bareHost ? null : (DEFAULT_PORTS[parsed.protocol] ?? null)),
        form: numeric?.ip === host ? reportedForm(numeric) : null,
        file: parsed.protocol === 'file:',
      });
    }
  }
  if (scheme === 'file') return candidates;
  // The RFC 3986 reading, and WHATWG's own when new URL() refused the text (a zone id, a port
  // out of range): other clients may still connect there.
  for (const raw of [rawAuthorityHost(text, 'rfc'), parsed ? undefined : whatwgRaw]) {
    if (!raw || raw.host === '') continue;
    const host = canonicalHost(raw.host);
    if (host === undefined || host === '') continue;
    add({
      path,
      url: bareHost || !parsed ? null : displayUrl(parsed),
      host,
      port: raw.port,
      form: reportedForm(parseNumericHost(raw.host)),
      file: false,
    });
  }
  return candidates;
}

function schemeOf(text: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase();
}

/** URLs in free text, and URLs inside those URLs (redirect parameters, plain or percent-encoded). */
function scanText(path: string, text: string, out: Candidate[], depth = 0): void {
  const trimmed = text.trim();
  const scheme = schemeOf(trimmed);
  // The whole value as a URL: catches forms free-text scanning cannot (http:127.0.0.1).
  if (depth === 0 && scheme && URL_SCHEMES.has(scheme) && !/\s/.test(trimmed)) out.push(...urlCandidates(path, trimmed, false));
  for (const match of text.matchAll(URL_IN_TEXT)) {
    if (!URL_SCHEMES.has((match[1] as string).toLowerCase())) continue;
    const found = match[0].replace(/[.,;:!?)'"]+$/, '');
    out.push(...urlCandidates(path, found, false));
    if (depth < MAX_NESTED_URL_DEPTH) {
      const rest = found.slice((match[1] as string).length + 3);
      scanText(path, rest, out, depth + 1);
      const decoded = safeDecode(rest);
      if (decoded !== rest) scanText(path, decoded, out, depth + 1);
    }
  }
}

function hostValueCandidates(path: string, value: string): Candidate[] {
  const word = value.trim();
  // A value with spaces is prose (a postal address, a sentence), not a host: scanText covers it.
  if (word === '' || /\s/.test(word)) return [];
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(word)) return urlCandidates(path, word, false);
  const prefixed = word.startsWith('//') ? `http:${word}` : `http://${/^[^[\]]*:[^[\]]*:/.test(word) ? `[${word}]` : word}`;
  return urlCandidates(path, prefixed, true);
}

function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function walk(value: unknown, path: string, hostKey: boolean, out: Candidate[], depth: number): void {
  if (depth > MAX_DEPTH) return;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    // Tool arguments often arrive as a JSON string (OpenAI function.arguments).
    if (/^[[{]/.test(trimmed)) {
      try {
        walk(JSON.parse(trimmed) as unknown, path, hostKey, out, depth + 1);
        return;
      } catch {
        // Not JSON: scan it as text.
      }
    }
    if (hostKey) out.push(...hostValueCandidates(path, value));
    scanText(path, value, out);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, index) => walk(item, childPath(path, index), hostKey, out, depth + 1));
    return;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) walk(item, childPath(path, key), isHostKey(key), out, depth + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/** The default resolver: the system resolver (getaddrinfo, so /etc/hosts counts), every address. */
export async function defaultResolver(host: string): Promise<string[]> {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((answer) => answer.address);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lookup timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function mostSevere(verdicts: readonly AddressVerdict[]): AddressVerdict {
  let worst: AddressVerdict = PUBLIC;
  for (const v of verdicts) {
    if (!v.private || v.reason === null) continue;
    if (worst.reason === null || SEVERITY.indexOf(v.reason) < SEVERITY.indexOf(worst.reason)) worst = v;
  }
  return worst;
}

type Resolution = { addresses: string[]; verdict: AddressVerdict };

async function resolveName(name: string, resolve: (host: string) => Promise<string[]>, timeoutMs: number): Promise<Resolution> {
  let answers: string[];
  try {
    answers = await withTimeout(resolve(name), timeoutMs);
  } catch {
    return { addresses: [], verdict: verdict('unresolvable') };
  }
  if (!Array.isArray(answers) || answers.length === 0) return { addresses: [], verdict: verdict('unresolvable') };
  const addresses: string[] = [];
  const verdicts: AddressVerdict[] = [];
  for (const answer of answers) {
    const ip = typeof answer === 'string' ? canonicalIp(answer) : undefined;
    if (ip === undefined) {
      verdicts.push(verdict('invalid_address'));
      continue;
    }
    if (!addresses.includes(ip)) addresses.push(ip);
    verdicts.push(classifyAddress(ip));
  }
  return { addresses, verdict: mostSevere(verdicts) };
}

/**
 * Finds the network destinations in tool-call arguments and classifies each one.
 *
 * Found: string values that are URLs with a network scheme (http(s), ws(s), ftp, gopher, file,
 * dict, ldap, redis, ...), URLs inside free text and inside other URLs' parameters, and values of
 * host-like keys (url, uri, host, hostname, endpoint, address, domain, ip, server, and names
 * ending in them such as base_url) even without a scheme. JSON strings are parsed and walked.
 *
 * Classified: numeric hosts directly; special names (localhost, metadata names, internal-only
 * suffixes) without a lookup; other names through `options.resolve`, private when ANY answer is
 * private. A name that does not resolve is `unresolvable` and private (fail closed).
 */
export async function findDestinations(
  toolArguments: ReadonlyArray<{ path: string; arguments: unknown }>,
  options: DestinationOptions = {},
): Promise<Destination[]> {
  const resolve = options.resolve ?? defaultResolver;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxLookups = options.maxDestinations ?? DEFAULT_MAX_DESTINATIONS;

  const candidates: Candidate[] = [];
  for (const entry of toolArguments) walk(entry.arguments, entry.path, false, candidates, 0);

  const unique: Candidate[] = [];
  const seen = new Set<string>();
  for (const candidate of candidates) {
    const key = JSON.stringify([candidate.path, candidate.url, candidate.host, candidate.port]);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(candidate);
  }

  // One lookup per distinct name, at most maxLookups of them, all at once.
  const lookups = new Map<string, Promise<Resolution>>();
  for (const candidate of unique) {
    if (candidate.host === '' || parseNumericHost(candidate.host) || classifyName(candidate.host)) continue;
    if (lookups.has(candidate.host) || lookups.size >= maxLookups) continue;
    lookups.set(candidate.host, resolveName(candidate.host, resolve, timeoutMs));
  }

  return Promise.all(
    unique.map(async (candidate): Promise<Destination> => {
      let addresses: string[] = [];
      let result: AddressVerdict;
      const numeric = candidate.host === '' ? undefined : parseNumericHost(candidate.host);
      if (candidate.host === '') {
        // Only a file: URL has an empty host (new URL() also empties file://localhost/).
        result = candidate.file ? verdict('local_file') : verdict('unresolvable');
      } else if (numeric) {
        addresses = [numeric.ip];
        result = classifyAddress(numeric.ip);
      } else {
        const byName = classifyName(candidate.host);
        const lookup = lookups.get(candidate.host);
        if (byName) result = byName;
        else if (!lookup) result = verdict('limit_exceeded');
        else ({ addresses, verdict: result } = await lookup);
      }
      return {
        path: candidate.path,
        url: candidate.url,
        host: candidate.host,
        port: candidate.port,
        addresses,
        private: result.private,
        reason: result.reason,
        numeric_form: candidate.form,
      };
    }),
  );
}
