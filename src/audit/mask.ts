/**
 * Masking the policy input before it is audited: credentials, bodies (prompt text) and secret-
 * looking query values never reach the audit trail. The masked copy keeps the input's shape, so
 * a record still shows which header or body was present and how big it was.
 */
const SENSITIVE_QUERY_KEY = /(key|token|secret|password|passwd|sig|signature|credential|auth)/i;

export const MASK = '[masked]';

function maskBody(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  const size = typeof value === 'string' ? Buffer.byteLength(value) : Buffer.byteLength(JSON.stringify(value));
  return `[masked: ${size} bytes]`;
}

function maskHeaderRecord(headers: unknown, maskHeaders: ReadonlySet<string>): unknown {
  if (!headers || typeof headers !== 'object' || Array.isArray(headers)) return headers;
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) copy[name] = maskHeaders.has(name.toLowerCase()) ? MASK : value;
  return copy;
}

function maskQueryString(query: string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      return SENSITIVE_QUERY_KEY.test(decodeURIComponentSafe(pair.slice(0, eq))) ? `${pair.slice(0, eq)}=${MASK}` : pair;
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

function maskPath(path: unknown): unknown {
  if (typeof path !== 'string') return path;
  const q = path.indexOf('?');
  return q < 0 ? path : `${path.slice(0, q)}?${maskQueryString(path.slice(q + 1))}`;
}

/** Returns a masked deep copy of a decision input; the original is not touched. */
export function maskInput(input: Readonly<Record<string, unknown>>, maskHeaders: ReadonlySet<string>): Record<string, unknown> {
  const copy = structuredClone(input) as Record<string, unknown>;
  const http = (copy.attributes as { request?: { http?: Record<string, unknown> } } | undefined)?.request?.http;
  if (http) {
    http.headers = maskHeaderRecord(http.headers, maskHeaders);
    const headerMap = http.headerMap as { headers?: { key?: string; value?: string; rawValue?: string }[] } | undefined;
    for (const entry of headerMap?.headers ?? []) {
      if (entry.key && maskHeaders.has(entry.key.toLowerCase())) {
        if (entry.value !== undefined) entry.value = MASK;
        if (entry.rawValue !== undefined) entry.rawValue = MASK;
      }
    }
    if (http.body !== undefined) http.body = maskBody(http.body);
    if (http.rawBody !== undefined) http.rawBody = maskBody(http.rawBody);
    if (typeof http.query === 'string') http.query = maskQueryString(http.query);
    http.path = maskPath(http.path);
  }
  if (copy.parsed_body !== undefined && copy.parsed_body !== null) copy.parsed_body = maskBody(copy.parsed_body);
  const query = copy.parsed_query as Record<string, unknown> | undefined;
  if (query && typeof query === 'object') {
    for (const key of Object.keys(query)) if (SENSITIVE_QUERY_KEY.test(key)) query[key] = [MASK];
  }
  return copy;
}
