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

const BASE64URL_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

/**
 * OPA's base64url.decode: unpadded input is padded first (a length of 1 mod 4 is invalid), input
 * already ending in "=" is taken as is; then Go's padded URL alphabet decoder, which skips CR/LF.
 */
export function base64UrlDecode(segment: string, what: string): Buffer {
  let text = segment;
  if (!text.endsWith('=')) {
    if (text.length % 4 === 1) throw new JwtBuiltinError(`${what} is not valid base64url`);
    text += '='.repeat((4 - (text.length % 4)) % 4);
  }
  text = text.replace(/[\r\n]/g, '');
  if (!BASE64URL_PADDED.test(text)) throw new JwtBuiltinError(`${what} is not valid base64url`);
  return Buffer.from(text, 'base64url');
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
