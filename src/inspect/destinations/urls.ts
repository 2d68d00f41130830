/**
 * Finding the URLs and hosts in tool arguments: URL strings, URLs in free text and inside other
 * URLs, and values of host-like keys, each read as WHATWG and as RFC 3986 parsers read it.
 */
import { canonicalHost, parseNumericHost, safeDecode, type NumericForm } from './hosts.js';

/** How deep nested JSON (including JSON inside string values) is walked. */
const MAX_DEPTH = 32;
/** How many levels of URLs inside URLs (open-redirect parameters) are followed. */
const MAX_NESTED_URL_DEPTH = 2;

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

/** A URL or host found in the arguments, canonicalised, before it is resolved. */
export interface Candidate {
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

/**
 * Collects into `out` the candidates in `value` (found at JSON path `path`): strings are scanned
 * for URLs, and read as hosts too when `hostKey` (their member name is host-like); arrays and
 * objects are walked, JSON inside strings is parsed and walked, up to MAX_DEPTH levels.
 */
export function walk(value: unknown, path: string, hostKey: boolean, out: Candidate[], depth: number): void {
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
