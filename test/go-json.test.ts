/**
 * The one Go-compatible JSON parser (src/core/go-json.ts), which the io.jwt.* builtins and the
 * bundle signature hashes both read with. What each relies on: exact numbers and Go's strictness
 * (both), the last of duplicate keys (both), a depth limit (bundle hashing), output in document
 * order (JWT results) and Go's canonical output (bundle hashes). Comparisons with OPA itself are
 * in builtins.test.ts and bundle-signing.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { canonicalGoJson, compareUtf8, JsonNumber, parseGoJson, toJsonText, wellFormed, type JsonValue } from '../src/core/go-json.js';

describe('parseGoJson', () => {
  it('keeps numbers as their source text, beyond 2^53 and in any notation', () => {
    for (const text of ['12345678901234567890', '-0', '1.50', '1E+2', '-12.50e-3', '0.1']) {
      const value = parseGoJson(text);
      expect(value).toBeInstanceOf(JsonNumber);
      expect((value as JsonNumber).text).toBe(text);
    }
    expect(toJsonText(parseGoJson('{"exp":12345678901234567890,"n":[1.0,2e3]}'))).toBe('{"exp":12345678901234567890,"n":[1.0,2e3]}');
  });

  it('reads strings, literals, arrays and objects, objects as Maps', () => {
    const value = parseGoJson(' {"a" : [true, false, null, "x\\ny"] ,\r\n\t"b":{}} ');
    expect(value).toEqual(new Map<string, JsonValue>([['a', [true, false, null, 'x\ny']], ['b', new Map()]]));
  });

  it('is strict JSON, as Go is: no leniency anywhere', () => {
    const invalid = [
      '', ' ', '01', '1.', '.5', '+1', '-', '1e', 'NaN', 'Infinity', 'tru', 'nul', 'True',
      '[1,]', '{"a":1,}', '{a:1}', "'a'", '{"a" 1}', '[1 2]', '1 2', '{"a":1}}', '[', '{"a":',
      '"\\x"', '"\\u12"', '"\u0001"', '"tab\there"', '"open',
      '\u00a01', '\f1', '\ufeff1', // only space, tab, CR and LF are whitespace
    ];
    for (const text of invalid) expect(() => parseGoJson(text), JSON.stringify(text)).toThrow();
  });

  it('takes the last of duplicate keys, at the place of the first', () => {
    const value = parseGoJson('{"a":1,"b":2,"a":3}') as Map<string, JsonValue>;
    expect([...value.keys()]).toEqual(['a', 'b']);
    expect(toJsonText(value)).toBe('{"a":3,"b":2}');
  });

  it('keeps "__proto__" an ordinary key', () => {
    const value = parseGoJson('{"__proto__":{"admin":true}}') as Map<string, JsonValue>;
    expect([...value.keys()]).toEqual(['__proto__']);
    expect(value.get('__proto__')).toEqual(new Map([['admin', true]]));
    expect(Object.getPrototypeOf(value)).toBe(Map.prototype);
  });

  it('decodes a lone surrogate escape as U+FFFD and keeps a pair', () => {
    expect(parseGoJson('"\\ud800x\\udc00"')).toBe('\uFFFDx\uFFFD');
    expect(parseGoJson('"\\ud83d\\ude00"')).toBe('\u{1F600}');
    expect(wellFormed('a\uD800')).toBe('a\uFFFD');
  });

  it('limits nesting when asked, the top-level value being at depth 0', () => {
    const nested = (depth: number): string => '['.repeat(depth + 1) + ']'.repeat(depth + 1);
    expect(() => parseGoJson(nested(2), { maxDepth: 2 })).not.toThrow();
    expect(() => parseGoJson(nested(3), { maxDepth: 2 })).toThrow(/nested too deeply/);
    expect(() => parseGoJson(`{"a":${nested(1)}}`, { maxDepth: 2 })).not.toThrow();
    expect(() => parseGoJson(`{"a":${nested(2)}}`, { maxDepth: 2 })).toThrow(/nested too deeply/);
    // Without a limit, deep documents parse (JWT claims are not limited but by the stack).
    expect(() => parseGoJson(nested(1500))).not.toThrow();
  });

  it('reads a string of tens of megabytes', () => {
    const big = 'a\\n'.repeat(20_000_000);
    expect((parseGoJson(`"${big}"`) as string).length).toBe(40_000_000);
  });
});

describe('canonicalGoJson', () => {
  it('writes Go\'s output: keys sorted by UTF-8 bytes, no whitespace, numbers as written', () => {
    // U+FF61 sorts before U+1F600 by UTF-8 bytes, after it by UTF-16 code units.
    const value = parseGoJson('{ "\u{1F600}": 1, "\uFF61": 2.50, "b": [ 1e3, "x" ], "a": {"z": null, "y": true} }');
    expect(canonicalGoJson(value)).toBe('{"a":{"y":true,"z":null},"b":[1e3,"x"],"\uFF61":2.50,"\u{1F600}":1}');
  });

  it('escapes U+2028 and U+2029 as Go does, and not HTML', () => {
    expect(canonicalGoJson('<a & b>\u2028\u2029')).toBe('"<a & b>\\u2028\\u2029"');
    expect(canonicalGoJson('a\uD800')).toBe('"a\uFFFD"');
  });

  it('is the same for a document however it is formatted or its keys ordered', () => {
    const a = canonicalGoJson(parseGoJson('{"b":1,"a":[1,2]}'));
    const b = canonicalGoJson(parseGoJson('{\n  "a": [1, 2],\n  "b": 1\n}\n'));
    expect(a).toBe(b);
  });
});

describe('toJsonText', () => {
  it('writes the document as read, in key order, without whitespace', () => {
    expect(toJsonText(parseGoJson('{ "b" : 1 , "a" : ["\u2028", 1.0] }'))).toBe('{"b":1,"a":["\u2028",1.0]}');
  });
});

describe('compareUtf8', () => {
  it('orders strings by their UTF-8 bytes', () => {
    expect(['\u{1F600}', '\uFF61', 'b', 'a', ''].sort(compareUtf8)).toEqual(['', 'a', 'b', '\uFF61', '\u{1F600}']);
  });
});
