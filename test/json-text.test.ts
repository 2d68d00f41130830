/**
 * JSON text written once and reused (src/core/json-text.ts): the policy input is serialised for
 * the engine in two parts and the audit record's masked copy reuses the part masking leaves
 * alone; the engine's result text is reused as the record's `result`. Reuse must never change
 * what is written: every text here must parse to exactly the value it stands for.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { maskedMembers, maskInput, MASKED_MEMBERS } from '../src/audit/mask.js';
import { readBundle } from '../src/bundles/bundle.js';
import { JsonText, MemberwiseJson, frozenForJson } from '../src/core/json-text.js';
import { projectRoot } from '../src/core/paths.js';
import { PolicyEngine } from '../src/policy/engine.js';

const input = {
  attributes: { request: { http: { method: 'POST', path: '/v1/chat?key=abc', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: '{"model":"m"}' } } },
  parsed_body: { model: 'm', messages: [{ role: 'user', content: 'hi "there"\n' }] },
  parsed_query: { key: ['abc'] },
  identity: { subject: 'ada', roles: ['a', 'b'], claims: { 'ü': 1.5, big: 1e21 } },
  skipped: undefined,
  spend: { 'user:ada': { day: { spent_usd: 0.25 } } },
};

describe('MemberwiseJson', () => {
  it('writes the same JSON as JSON.stringify, the apart members first', () => {
    const json = MemberwiseJson.of(input, MASKED_MEMBERS);
    expect(JSON.parse(json.text)).toEqual(JSON.parse(JSON.stringify(input)));
    expect(Object.keys(JSON.parse(json.text))).toEqual(['attributes', 'parsed_body', 'parsed_query', 'identity', 'spend']);
    expect(MemberwiseJson.of({}, MASKED_MEMBERS).text).toBe('{}');
    expect(MemberwiseJson.of({ parsed_body: 1 }, MASKED_MEMBERS).text).toBe('{"parsed_body":1}');
    expect(MemberwiseJson.of({ spend: 1 }, MASKED_MEMBERS).text).toBe('{"spend":1}');
  });

  it("writes a masked copy as that copy's JSON, reusing the rest's text", () => {
    const json = MemberwiseJson.of(input, MASKED_MEMBERS);
    const replaced = maskedMembers(input, new Set(['authorization']));
    expect(Object.keys(replaced).every((key) => MASKED_MEMBERS.includes(key))).toBe(true);
    const text = json.textWith(replaced).join('');
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(maskInput(input, new Set(['authorization'])))));
    expect(text).not.toContain('Bearer x');
    expect(text).not.toContain('hi \\"there\\"');
  });

  it('refuses to replace a member that was not serialised apart', () => {
    const json = MemberwiseJson.of(input, MASKED_MEMBERS);
    expect(() => json.textWith({ identity: {} })).toThrow('not serialised apart');
    expect(() => json.textWith({ tool_calls: [] })).toThrow('not serialised apart');
    expect(JSON.parse(json.textWith({}).join(''))).toEqual(JSON.parse(json.text));
  });

  it('throws what JSON.stringify throws', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => MemberwiseJson.of({ identity: cyclic }, MASKED_MEMBERS)).toThrow(TypeError);
    expect(() => MemberwiseJson.of({ parsed_body: 1n }, MASKED_MEMBERS)).toThrow(TypeError);
  });
});

describe('values frozen for JSON', () => {
  it('are written once and spliced into every input that holds them, after the other members', () => {
    const identity = frozenForJson({ subject: 'ada', roles: ['a'], claims: { nested: { deep: [1, { x: 'y' }] } } });
    const first = MemberwiseJson.of({ ...input, identity }, MASKED_MEMBERS);
    const second = MemberwiseJson.of({ parsed_body: 'b', identity, spend: { n: 1 } }, MASKED_MEMBERS);
    expect(JSON.parse(first.text)).toEqual(JSON.parse(JSON.stringify({ ...input, identity })));
    expect(Object.keys(JSON.parse(first.text))).toEqual(['attributes', 'parsed_body', 'parsed_query', 'spend', 'identity']);
    expect(JSON.parse(second.text)).toEqual({ parsed_body: 'b', spend: { n: 1 }, identity });
    // Written once: a second input holding the value does not serialise it again.
    let written = 0;
    const counted = frozenForJson({ toJSON: () => (written++, { n: written }) });
    const texts = [MemberwiseJson.of({ counted }, MASKED_MEMBERS).text, MemberwiseJson.of({ parsed_body: 1, counted }, MASKED_MEMBERS).text];
    expect(written).toBe(1);
    expect(texts).toEqual(['{"counted":{"n":1}}', '{"parsed_body":1,"counted":{"n":1}}']);
    expect(MemberwiseJson.of({ identity }, MASKED_MEMBERS).text).toBe(JSON.stringify({ identity }));
    const masked = first.textWith(maskedMembers({ ...input, identity }, new Set(['authorization']))).join('');
    expect(JSON.parse(masked).identity).toEqual(identity);
  });

  it('cannot change once frozen, however deep', () => {
    const inner = { deep: [1] };
    const value = frozenForJson({ claims: Object.freeze({ inner }) });
    expect(Object.isFrozen(inner)).toBe(true);
    expect(Object.isFrozen(inner.deep)).toBe(true);
    expect(() => {
      (inner.deep as number[]).push(2);
    }).toThrow(TypeError);
    expect(MemberwiseJson.of({ value }, []).text).toBe('{"value":{"claims":{"inner":{"deep":[1]}}}}');
  });

  it('are only the values frozen for it: a value frozen by other means is written each time', () => {
    const plain = Object.freeze({ n: 1 });
    expect(MemberwiseJson.of({ plain }, []).pieces).toEqual(['{"plain":{"n":1}}']);
  });
});

describe('JsonText', () => {
  it('stringifies as its value where a serialiser does not know it', () => {
    const text = new JsonText(['{"a":', '[1,2]', '}']);
    expect(text.text).toBe('{"a":[1,2]}');
    expect(JSON.stringify({ value: text })).toBe('{"value":{"a":[1,2]}}');
  });
});

describe("the engine's result text", () => {
  it('is the result the engine parsed, for allowed and denied requests', async () => {
    const bundle = await readBundle(join(projectRoot(), 'bundles', 'signalbox.tar.gz'));
    const engine = await PolicyEngine.create(bundle, { entrypoint: 'signalbox/authz/decision' });
    const inputs: unknown[] = [
      {},
      new JsonText('{"attributes":{"request":{"http":{"method":"GET","path":"/v1/models","headers":{}}}}}'),
      MemberwiseJson.of(input, MASKED_MEMBERS),
    ];
    for (const each of inputs) {
      const evaluation = engine.evaluate(each, 1_700_000_000_000_000_000n);
      expect(evaluation.resultJson, 'the fast path writes the result text').toBeDefined();
      expect(JSON.parse(evaluation.resultJson!.text)).toEqual(evaluation.result);
    }
  });
});
