/**
 * Host text as URL parsers read it: numeric hosts in every spelling inet_aton and WHATWG accept
 * (decimal, octal, hex, short, mixed, IPv6 embeddings), canonical host names, and the names that
 * are private without a lookup (metadata services, localhost, internal-only suffixes).
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { canonicalV6, embeddedV4, intToV4, v6Groups, verdict, type AddressVerdict } from './ip-rules.js';

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

/** `decodeURIComponent`, or the text unchanged when it is not valid percent-encoding. */
export function safeDecode(text: string): string {
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

/** The verdict on a name that is private without a lookup (metadata, localhost, internal-only); undefined for any other name. */
export function classifyName(name: string): AddressVerdict | undefined {
  if (METADATA_NAMES.has(name)) return verdict('metadata');
  if (name === 'localhost' || name.endsWith('.localhost')) return verdict('loopback');
  if (!name.includes('.')) return verdict('internal_name');
  if (INTERNAL_SUFFIXES.some((suffix) => name === suffix || name.endsWith(`.${suffix}`))) return verdict('internal_name');
  return undefined;
}

/** Canonical host text: WHATWG host parsing (percent-decoding, IDNA, lowercase), no trailing dot. */
export function canonicalHost(raw: string): string | undefined {
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
