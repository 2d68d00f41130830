/**
 * Masking the policy input before it is audited: credentials (by header name, and by value
 * wherever they appear in headers or the query), bodies (prompt text) and secret-looking query
 * values never reach the audit trail. The masked copy keeps the input's shape, so
 * a record still shows which header or body was present and how big it was.
 */
const SENSITIVE_QUERY_KEY = /(key|token|secret|password|passwd|sig|signature|credential|auth)/i;

/** What a masked header or query value is replaced by. */
export const MASK = '[masked]';

/** How many values a body may hold before its size is no longer counted (bounds the time masking takes). */
export const MAX_MEASURED_NODES = 1_000_000;

/**
 * The byte length of `value` as JSON.stringify would write it, counted without building the
 * text and without recursion, so a body nested 500,000 levels deep (which JSON.parse accepts)
 * is measured rather than overflowing the stack. Undefined past {@link MAX_MEASURED_NODES} values.
 */
export function jsonByteLength(value: unknown): number | undefined {
  let bytes = 0;
  let nodes = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    if (++nodes > MAX_MEASURED_NODES) return undefined;
    const item = pending.pop();
    if (item === null || typeof item !== 'object') {
      bytes += Buffer.byteLength(JSON.stringify(item) ?? 'null');
    } else if (Array.isArray(item)) {
      bytes += 2 + Math.max(0, item.length - 1);
      for (const element of item) pending.push(element === undefined ? null : element);
    } else {
      const entries = Object.entries(item).filter(([, v]) => v !== undefined);
      bytes += 2 + Math.max(0, entries.length - 1);
      for (const [key, v] of entries) {
        bytes += Buffer.byteLength(JSON.stringify(key)) + 1;
        pending.push(v);
      }
    }
  }
  return bytes;
}

function maskBody(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  const size = typeof value === 'string' ? Buffer.byteLength(value) : jsonByteLength(value);
  return size === undefined ? `[masked: over ${MAX_MEASURED_NODES} values]` : `[masked: ${size} bytes]`;
}

/**
 * Recognises a credential by its value (the secret detectors: an OpenAI or Anthropic key, a
 * GitHub token, a JWT, ...), whatever header or query parameter carries it. Injected by the
 * caller, so masking needs no detector of its own.
 */
export type CredentialTest = (value: string) => boolean;

const NEVER: CredentialTest = () => false;

/** Header values: by name (the configured list), or by meaning. */
function maskHeaderRecord(headers: unknown, maskHeaders: ReadonlySet<string>, isCredential: CredentialTest): unknown {
  if (!headers || typeof headers !== 'object' || Array.isArray(headers)) return headers;
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    copy[name] = maskHeaders.has(name.toLowerCase()) || (typeof value === 'string' && isCredential(value)) ? MASK : value;
  }
  return copy;
}

function maskQueryString(query: string, isCredential: CredentialTest): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      const secret = SENSITIVE_QUERY_KEY.test(decodeURIComponentSafe(pair.slice(0, eq))) || isCredential(decodeURIComponentSafe(pair.slice(eq + 1)));
      return secret ? `${pair.slice(0, eq)}=${MASK}` : pair;
    })
    .join('&');
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function maskPath(path: unknown, isCredential: CredentialTest): unknown {
  if (typeof path !== 'string') return path;
  const q = path.indexOf('?');
  return q < 0 ? path : `${path.slice(0, q)}?${maskQueryString(path.slice(q + 1), isCredential)}`;
}

/**
 * The members of a decision input {@link maskedMembers} may replace; the masked copy shares every
 * other member with the input, so their serialised text can be reused (core/json-text.ts).
 */
export const MASKED_MEMBERS: readonly string[] = ['attributes', 'parsed_body', 'tool_calls', 'parsed_query'];

/**
 * The masked versions of the input's members that masking changes (some of
 * {@link MASKED_MEMBERS}); the input is not touched. Only the branches that change are copied
 * (the rest is shared), because this runs for every decision.
 */
export function maskedMembers(input: Readonly<Record<string, unknown>>, maskHeaders: ReadonlySet<string>, isCredential: CredentialTest = NEVER): Record<string, unknown> {
  const replaced: Record<string, unknown> = {};
  const attributes = input.attributes as { request?: { http?: Record<string, unknown> } } | undefined;
  const http = attributes?.request?.http;
  if (attributes && http) {
    const masked: Record<string, unknown> = { ...http, headers: maskHeaderRecord(http.headers, maskHeaders, isCredential), path: maskPath(http.path, isCredential) };
    const headerMap = http.headerMap as { headers?: { key?: string; value?: string; rawValue?: string }[] } | undefined;
    if (headerMap?.headers) {
      masked.headerMap = {
        ...headerMap,
        headers: headerMap.headers.map((entry) =>
          entry.key && (maskHeaders.has(entry.key.toLowerCase()) || [entry.value, entry.rawValue].some((v) => typeof v === 'string' && isCredential(v)))
            ? { ...entry, ...(entry.value !== undefined ? { value: MASK } : {}), ...(entry.rawValue !== undefined ? { rawValue: MASK } : {}) }
            : entry,
        ),
      };
    }
    if (http.body !== undefined) masked.body = maskBody(http.body);
    if (http.rawBody !== undefined) masked.rawBody = maskBody(http.rawBody);
    if (typeof http.query === 'string') masked.query = maskQueryString(http.query, isCredential);
    replaced.attributes = { ...attributes, request: { ...attributes.request, http: masked } };
  }
  if (input.parsed_body !== undefined && input.parsed_body !== null) {
    // The parsed body's size is the raw body's, when the door forwarded it: no need to walk it.
    replaced.parsed_body = typeof http?.body === 'string' ? maskBody(http.body) : maskBody(input.parsed_body);
  }
  // Tool-call arguments are request content (a prompt by another name): size only.
  if (Array.isArray(input.tool_calls)) {
    replaced.tool_calls = input.tool_calls.map((call: unknown) =>
      call && typeof call === 'object' && 'arguments' in call ? { ...call, arguments: maskBody((call as { arguments: unknown }).arguments) } : call,
    );
  }
  const query = input.parsed_query as Record<string, unknown> | undefined;
  if (query && typeof query === 'object') {
    const secret = (key: string, value: unknown): boolean =>
      SENSITIVE_QUERY_KEY.test(key) || (Array.isArray(value) && value.some((v) => typeof v === 'string' && isCredential(v)));
    replaced.parsed_query = Object.fromEntries(Object.entries(query).map(([key, value]) => [key, secret(key, value) ? [MASK] : value]));
  }
  return replaced;
}

/** A masked copy of a decision input: the input with {@link maskedMembers} in place; the input is not touched. */
export function maskInput(input: Readonly<Record<string, unknown>>, maskHeaders: ReadonlySet<string>, isCredential: CredentialTest = NEVER): Record<string, unknown> {
  return { ...input, ...maskedMembers(input, maskHeaders, isCredential) };
}
