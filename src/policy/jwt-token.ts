/**
 * The structure of a compact JWT as OPA's io.jwt.* builtins read it (v1 topdown/tokens.go): its
 * three segments, OPA's base64url decoding, the JOSE header and the parameters OPA understands.
 */
import { parseGoJson, type JsonObject, type JsonValue } from '../core/go-json.js';

/** An error of an io.jwt.* builtin: the call is undefined, as in OPA with strict errors off. */
export class JwtBuiltinError extends Error {}

// ---------------------------------------------------------------------------------------------
// JSON as OPA reads JWT segments: Go's encoding/json with UseNumber (core/go-json.ts).
// ---------------------------------------------------------------------------------------------

/** A JWT segment's JSON, which must be an object; anything else is a JwtBuiltinError naming `what`. */
export function parseObject(bytes: Buffer, what: string): JsonObject {
  let value: JsonValue;
  try {
    value = parseGoJson(bytes.toString('utf8'));
  } catch {
    throw new JwtBuiltinError(`${what} is not valid JSON`);
  }
  if (!(value instanceof Map)) throw new JwtBuiltinError(`${what} is not a JSON object`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Token structure.
// ---------------------------------------------------------------------------------------------

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * The error offset of Go's base64.URLEncoding.DecodeString(text) (its decodeQuantum), or -1 when
 * the text decodes: the decoder skips CR and LF, and wants "=" padding exactly where it belongs.
 */
function goBase64Error(text: string): number {
  const isNewline = (c: string | undefined): boolean => c === '\n' || c === '\r';
  let si = 0;
  while (si < text.length) {
    for (let j = 0; j < 4; j++) {
      if (si === text.length) {
        if (j === 0) return -1;
        return si - j;
      }
      const c = text[si] as string;
      si++;
      if (BASE64URL_ALPHABET.includes(c)) continue;
      if (isNewline(c)) {
        j--;
        continue;
      }
      if (c !== '=' || j < 2) return si - 1;
      if (j === 2) {
        // "==" is expected; the first "=" is already consumed.
        while (si < text.length && isNewline(text[si])) si++;
        if (si === text.length) return text.length;
        if (text[si] !== '=') return si - 1;
        si++;
      }
      while (si < text.length && isNewline(text[si])) si++;
      return si < text.length ? si : -1;
    }
  }
  return -1;
}

/** What a base64url text encodes, for error messages: a JWT segment or another field. */
export type Base64UrlField = 'header' | 'payload' | 'signature' | 'JWK k';

/**
 * OPA's base64url.decode: unpadded input is padded first (a length of 1 mod 4 is invalid), input
 * already ending in "=" is taken as is; then Go's padded URL alphabet decoder, which skips CR/LF.
 * Errors carry OPA's text ("JWT header had invalid encoding: illegal base64 data at input byte 13").
 */
export function base64UrlDecode(segment: string, what: Base64UrlField): Buffer {
  const fail = (detail: string): JwtBuiltinError =>
    new JwtBuiltinError(what === 'JWK k' ? `${what}: ${detail}` : `JWT ${what} had invalid encoding: ${detail}`);
  let text = segment;
  if (!text.endsWith('=')) {
    if (text.length % 4 === 1) throw fail(`illegal base64url string: ${text.slice(0, 64)}`);
    text += '='.repeat((4 - (text.length % 4)) % 4);
  }
  const offset = goBase64Error(text);
  if (offset >= 0) throw fail(`illegal base64 data at input byte ${offset}`);
  return Buffer.from(text.replace(/[\r\n]/g, ''), 'base64url');
}

/** The three base64url segments of a compact JWS, still encoded. */
export interface TokenParts {
  readonly header: string;
  readonly payload: string;
  readonly signature: string;
}

/** A compact token's three segments; anything but a string of three dot-separated parts is an error. */
export function splitToken(token: unknown): TokenParts {
  if (typeof token !== 'string') throw new JwtBuiltinError('token must be a string');
  if (!token.includes('.')) throw new JwtBuiltinError('encoded JWT had no period separators');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwtBuiltinError(`encoded JWT must have 3 sections, found ${parts.length}`);
  const [header, payload, signature] = parts as [string, string, string];
  return { header, payload, signature };
}

/** The bytes a JWS signature covers: the encoded header and payload, joined by a dot. */
export function signingInput(parts: TokenParts): Buffer {
  return Buffer.from(`${parts.header}.${parts.payload}`);
}

/** The JOSE header object; a JWE (an "enc" member) is not supported, as in OPA. */
export function decodeHeader(parts: TokenParts): JsonObject {
  const header = parseObject(base64UrlDecode(parts.header, 'header'), 'header');
  if (header.has('enc')) throw new JwtBuiltinError('JWT is a JWE object, which is not supported');
  return header;
}

/** OPA's parseTokenHeader: the header parameters it understands, type-checked. */
export interface HeaderFields {
  alg: string;
  kid: string;
  typ: string;
  cty: string;
  crit: ReadonlySet<string>;
  unknown: string[];
}

/** The header parameters OPA understands, type-checked; the others listed as unknown. */
export function headerFields(header: JsonObject): HeaderFields {
  const fields: HeaderFields = { alg: '', kid: '', typ: '', cty: '', crit: new Set(), unknown: [] };
  for (const [name, value] of header) {
    if (name === 'alg' || name === 'kid' || name === 'typ' || name === 'cty') {
      if (typeof value !== 'string') throw new JwtBuiltinError(`${name}: must be a string`);
      fields[name] = value;
    } else if (name === 'crit') {
      fields.crit = critNames(value);
    } else {
      fields.unknown.push(name);
    }
  }
  return fields;
}

function critNames(value: JsonValue): ReadonlySet<string> {
  if (!Array.isArray(value)) throw new JwtBuiltinError('crit: must be a list');
  const names = new Set<string>();
  // OPA stops at the first non-string element and drops that error, keeping the names before it.
  for (const item of value) {
    if (typeof item !== 'string') break;
    names.add(item);
  }
  if (names.size === 0) throw new JwtBuiltinError('crit: must be a nonempty list');
  return names;
}

/** RFC 7515: "alg" is required, and a critical parameter OPA does not understand invalidates the JWS. */
export function headerValid(fields: HeaderFields): boolean {
  return fields.alg !== '' && !fields.unknown.some((name) => fields.crit.has(name));
}
