/**
 * Canonical JSON for hashing: object keys sorted by code point, no whitespace, numbers and strings
 * as JSON.stringify writes them (RFC 8785's rules for the values audit records hold). The same
 * record always hashes the same, whatever order its keys were built in.
 */
export function canonicalJson(value: unknown): string {
  return canonical(value, 0);
}

/** Records are shallow; anything deeper than this is refused rather than risking the stack. */
export const MAX_CANONICAL_DEPTH = 256;

/** A value nested deeper than {@link MAX_CANONICAL_DEPTH}: it has no canonical form here. */
export class TooDeepError extends RangeError {
  constructor() {
    super(`nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
    this.name = 'TooDeepError';
  }
}

function canonical(value: unknown, depth: number): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    return text === undefined ? 'null' : text;
  }
  if (depth >= MAX_CANONICAL_DEPTH) throw new TooDeepError();
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      const item: unknown = value[i];
      out += item === undefined ? 'null' : canonical(item, depth + 1);
    }
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  // Default sort compares UTF-16 code units, which orders keys as RFC 8785 requires.
  const keys = Object.keys(object).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const item = object[key];
    if (item === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${canonical(item, depth + 1)}`;
    first = false;
  }
  return `${out}}`;
}
