/**
 * The HTTP facts opa-envoy-plugin adds to the input: `parsed_path`, `parsed_query`,
 * `parsed_body` and `truncated_body`, with the same rules so its policies run unchanged.
 */
import { SignalboxError } from '../core/errors.js';

/**
 * The request facts opa-envoy-plugin puts in its input, under the same names, so its policies run
 * unchanged on Signalbox.
 */
export interface HttpFacts {
  parsed_path: string[];
  parsed_query: Record<string, string[]>;
  parsed_body: unknown;
  truncated_body: boolean;
}

function percentDecode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch (error) {
    throw new SignalboxError('request_malformed', `the request ${what} has an invalid percent-escape`, { cause: error });
  }
}

/** The path before `?`, percent-decoded, leading slashes stripped, split on `/` ("/" → [""]). */
export function parsePath(path: string): string[] {
  const beforeQuery = path.split('?', 1)[0] as string;
  return percentDecode(beforeQuery, 'path').replace(/^\/+/, '').split('/');
}

/** A query string as Go's url.ParseQuery reads it: `+` is a space, repeated keys keep order. */
export function parseQueryString(query: string, what = 'query'): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    if (pair.includes(';')) throw new SignalboxError('request_malformed', `the request ${what} uses ";" as a separator`);
    const eq = pair.indexOf('=');
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? '' : pair.slice(eq + 1);
    const key = percentDecode(rawKey.replace(/\+/g, ' '), what);
    const value = percentDecode(rawValue.replace(/\+/g, ' '), what);
    (result[key] ??= []).push(value);
  }
  return result;
}

/** The query of a request path (`parsed_query`): everything after `?` and before any `#`; `{}` when there is none. */
export function parseQuery(path: string): Record<string, string[]> {
  const index = path.indexOf('?');
  return index < 0 ? {} : parseQueryString(path.slice(index + 1).split('#', 1)[0] as string);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SignalboxError('body_malformed', 'the request body is declared as JSON but does not parse', { cause: error });
  }
}

function parseMultipart(body: Buffer, contentType: string): Record<string, unknown[]> | null {
  const boundaryMatch = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const boundary = boundaryMatch?.[1] ?? boundaryMatch?.[2]?.trim();
  if (!boundary) return null;
  const result: Record<string, unknown[]> = {};
  const text = body.toString('latin1');
  const delimiter = `--${boundary}`;
  for (const rawPart of text.split(delimiter).slice(1)) {
    if (rawPart.startsWith('--')) break;
    const part = rawPart.replace(/^\r?\n/, '');
    const headerEnd = part.search(/\r?\n\r?\n/);
    if (headerEnd < 0) throw new SignalboxError('body_malformed', 'a multipart part has no header block');
    const headerBlock = part.slice(0, headerEnd);
    const content = Buffer.from(part.slice(headerEnd).replace(/^\r?\n\r?\n/, '').replace(/\r?\n$/, ''), 'latin1').toString('utf8');
    const name = /content-disposition:[^\n]*\bname="([^"]*)"/i.exec(headerBlock)?.[1];
    if (name === undefined) continue;
    const partType = /content-type:\s*([^\r\n]+)/i.exec(headerBlock)?.[1]?.toLowerCase() ?? '';
    (result[name] ??= []).push(partType.includes('application/json') ? parseJson(content) : content);
  }
  return result;
}

/**
 * Parses the body by content type. A body the gateway cut short (content-length larger than what
 * arrived, or Envoy's partial-body header) is not parsed: `truncated_body` tells the policy.
 */
export function parseBody(headers: Readonly<Record<string, string>>, body: Buffer): Pick<HttpFacts, 'parsed_body' | 'truncated_body'> {
  if (headers['x-envoy-auth-partial-body'] === 'true') return { parsed_body: null, truncated_body: true };
  const declaredLength = headers['content-length'];
  if (declaredLength !== undefined && declaredLength !== '') {
    if (!/^\d+$/.test(declaredLength.trim())) throw new SignalboxError('request_malformed', 'the content-length header is not a number');
    if (Number(declaredLength) > body.length) return { parsed_body: null, truncated_body: true };
  }
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  if (body.length === 0) return { parsed_body: null, truncated_body: false };
  if (contentType.includes('application/json')) return { parsed_body: parseJson(body.toString('utf8')), truncated_body: false };
  if (contentType.includes('application/x-www-form-urlencoded')) {
    return { parsed_body: parseQueryString(body.toString('utf8'), 'form body'), truncated_body: false };
  }
  if (contentType.includes('multipart/form-data')) return { parsed_body: parseMultipart(body, contentType), truncated_body: false };
  return { parsed_body: null, truncated_body: false };
}

/** All four facts for one request. */
export function httpFacts(path: string, headers: Readonly<Record<string, string>>, body: Buffer): HttpFacts {
  return { parsed_path: parsePath(path), parsed_query: parseQuery(path), ...parseBody(headers, body) };
}
