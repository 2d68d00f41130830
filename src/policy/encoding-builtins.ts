/**
 * Encoding builtins OPA's WASM compiler does not implement natively (it has base64url.encode and
 * base64url.decode, not the unpadded form), following v1/topdown/encoding.go.
 */
import { operandTypeError, type HostBuiltin } from './host-builtin.js';

/** The encoding builtins keyed by OPA builtin name. */
export function encodingBuiltins(): Record<string, HostBuiltin> {
  return {
    // Go's base64.RawURLEncoding of the string's UTF-8 bytes.
    'base64url.encode_no_pad': (value) => {
      if (typeof value !== 'string') throw operandTypeError(1, value, 'string');
      return Buffer.from(value, 'utf8').toString('base64url');
    },
  };
}
