/**
 * opa-envoy-plugin compatibility: the upstream example policies in test/fixtures/opa-envoy-plugin
 * must run on Signalbox unchanged.
 *
 * Each `<name>.rego` fixture has a `<name>.cases.json` sibling. A case gives the decision path,
 * the CheckRequest Envoy sent (protojson), the exact input opa-envoy-plugin builds from it, and
 * the decision opa-envoy-plugin returns (or the compile error OPA reports). Three layers are
 * checked independently, so a failure points at the layer that differs:
 *
 *   1. policy evaluation: the compiled WASM on the fixture's own input gives the fixture's result;
 *   2. input construction: the CheckRequest, decoded as grpc-js decodes it and run through the
 *      real adapter and pipeline, gives the fixture's input;
 *   3. end to end: the CheckRequest sent to a running Signalbox over gRPC gives the CheckResponse
 *      opa-envoy-plugin would send for the fixture's decision.
 *
 * A case that cannot run fails; nothing here is skipped.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fromCheckRequest } from '../src/transport/doors/envoy-grpc.js';
import { noopAuditSink } from '../src/audit/log.js';
import { parseConfig } from '../src/config/load.js';
import { SignalboxError } from '../src/core/errors.js';
import { silentLogger } from '../src/core/log.js';
import type { DecisionPipeline } from '../src/decide/decide.js';
import { buildBundle } from '../src/bundles/build.js';
import { readBundle } from '../src/bundles/bundle.js';
import type { PolicyBundle } from '../src/policy/compiled.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { createPipeline } from '../src/app/app.js';
import { loadServices } from '../src/transport/protos.js';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

interface FixtureCase {
  readonly name: string;
  /** opa-envoy-plugin's `path` config: the decision rule, "envoy/authz/allow". */
  readonly path: string;
  readonly note?: string;
  /** The Envoy CheckRequest in protojson (camelCase names, RFC 3339 timestamps, int64 as strings). */
  readonly check_request?: Json;
  /** The input document opa-envoy-plugin builds from `check_request`. */
  readonly input: Json;
  /** The decision value; present unless `expect_compile_error` is. */
  readonly expect?: unknown;
  /** The error `opa build` reports for this policy. */
  readonly expect_compile_error?: string;
}

interface Fixture {
  readonly name: string;
  readonly regoFile: string;
  /** The header says the policy is Rego v0 ("*** Rego v0 syntax ***"): compile with --v0-compatible. */
  readonly v0: boolean;
  /** Every decision path the cases use; passed as `opa build -e`, since the policies carry no annotations. */
  readonly entrypoints: readonly string[];
  readonly cases: readonly FixtureCase[];
}

const FIXTURE_DIR = fileURLToPath(new URL('./fixtures/opa-envoy-plugin/', import.meta.url));

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates one case; a malformed fixture throws at collection, which fails this file. */
function parseCase(raw: unknown, where: string): FixtureCase {
  if (!isRecord(raw)) throw new Error(`${where}: a case must be an object`);
  const { name, path, note, check_request: checkRequest, input } = raw;
  if (typeof name !== 'string' || name === '') throw new Error(`${where}: case without a name`);
  const at = `${where} "${name}"`;
  if (typeof path !== 'string' || !/^\w+(\/\w+)*$/.test(path)) throw new Error(`${at}: path must be a slash-separated rule path`);
  if (note !== undefined && typeof note !== 'string') throw new Error(`${at}: note must be a string`);
  if (checkRequest !== undefined && !isRecord(checkRequest)) throw new Error(`${at}: check_request must be an object`);
  if (!isRecord(input)) throw new Error(`${at}: input must be an object`);
  const hasExpect = Object.prototype.hasOwnProperty.call(raw, 'expect');
  const compileError = raw.expect_compile_error;
  if (hasExpect === (compileError !== undefined)) throw new Error(`${at}: give exactly one of expect and expect_compile_error`);
  if (compileError !== undefined && typeof compileError !== 'string') throw new Error(`${at}: expect_compile_error must be a string`);
  return {
    name,
    path,
    input,
    ...(note !== undefined ? { note } : {}),
    ...(checkRequest !== undefined ? { check_request: checkRequest } : {}),
    ...(hasExpect ? { expect: raw.expect } : { expect_compile_error: compileError as string }),
  };
}

function loadFixtures(): Fixture[] {
  const files = readdirSync(FIXTURE_DIR);
  const regoFiles = files.filter((f) => f.endsWith('.rego')).sort();
  const orphans = files.filter((f) => f.endsWith('.cases.json') && !regoFiles.includes(f.replace(/\.cases\.json$/, '.rego')));
  if (orphans.length > 0) throw new Error(`cases without a policy: ${orphans.join(', ')}`);
  if (regoFiles.length === 0) throw new Error(`no fixtures in ${FIXTURE_DIR}`);
  return regoFiles.map((regoFile) => {
    const name = regoFile.replace(/\.rego$/, '');
    const casesFile = `${name}.cases.json`;
    if (!files.includes(casesFile)) throw new Error(`${regoFile} has no ${casesFile}`);
    const raw: unknown = JSON.parse(readFileSync(join(FIXTURE_DIR, casesFile), 'utf8'));
    if (!Array.isArray(raw) || raw.length === 0) throw new Error(`${casesFile} must be a non-empty array of cases`);
    const cases = raw.map((c, i) => parseCase(c, `${casesFile}[${i}]`));
    const syntax = /^# Syntax:(.*)$/m.exec(readFileSync(join(FIXTURE_DIR, regoFile), 'utf8'))?.[1];
    if (syntax === undefined) throw new Error(`${regoFile} has no "# Syntax:" header line`);
    return {
      name,
      regoFile,
      v0: /\bRego v0 syntax\b/.test(syntax),
      entrypoints: [...new Set(cases.map((c) => c.path))],
      cases,
    };
  });
}

const FIXTURES = loadFixtures();

/** Test rows as [title, value] tuples: `%s` prints the whole title (`$name` would be quoted and cut). */
function rows<T>(items: readonly T[], title: (item: T) => string): [string, T][] {
  return items.map((item) => [title(item), item]);
}

// ---------------------------------------------------------------------------------------------
// Building each fixture once
// ---------------------------------------------------------------------------------------------

interface BuiltFixture {
  readonly file: string;
  readonly bundle: PolicyBundle;
}

let workDir: Promise<string> | undefined;
const builds = new Map<string, Promise<BuiltFixture>>();
const engines = new Map<string, Promise<PolicyEngine>>();

afterAll(async () => {
  if (workDir) await rm(await workDir, { recursive: true, force: true });
});

/**
 * Compiles a fixture (memoised: the evaluation and end-to-end tests share the build). `opa build`
 * compiles a whole folder, so each policy is copied alone into its own folder.
 */
function buildFixture(fixture: Fixture): Promise<BuiltFixture> {
  let build = builds.get(fixture.name);
  if (!build) {
    build = (async () => {
      workDir ??= mkdtemp(join(tmpdir(), 'signalbox-opa-envoy-plugin-'));
      const source = join(await workDir, fixture.name, 'src');
      await mkdir(source, { recursive: true });
      await copyFile(join(FIXTURE_DIR, fixture.regoFile), join(source, fixture.regoFile));
      const file = join(await workDir, fixture.name, 'bundle.tar.gz');
      await buildBundle(source, file, { entrypoints: fixture.entrypoints, v0Compatible: fixture.v0 });
      return { file, bundle: await readBundle(file) };
    })();
    builds.set(fixture.name, build);
  }
  return build;
}

function fixtureEngine(fixture: Fixture, path: string): Promise<PolicyEngine> {
  const key = `${fixture.name}#${path}`;
  let engine = engines.get(key);
  if (!engine) {
    engine = buildFixture(fixture).then(({ bundle }) => PolicyEngine.create(bundle, { entrypoint: path }));
    engines.set(key, engine);
  }
  return engine;
}

/**
 * "Now" for every evaluation, in the engine and in the server: the time the fixtures' requests
 * carry (request.time). The JWT fixtures hold upstream tokens that expire on fixed dates
 * (2031-07-06 and later) and their policies compare exp with time.now_ns(), so a real clock would
 * fail them from that day on. Nothing else in these tests reads a clock: the server decides with
 * the in-memory store.
 */
const FIXTURE_TIME_NS = BigInt(Date.parse('2026-11-22T09:30:00.123Z')) * 1_000_000n;
function nowNs(): bigint {
  return FIXTURE_TIME_NS;
}

// ---------------------------------------------------------------------------------------------
// Decoding a protojson CheckRequest as grpc-js does
// ---------------------------------------------------------------------------------------------

/** protojson's RFC 3339 Timestamp as the {seconds, nanos} object protobufjs' fromObject needs. */
function timestampFromRfc3339(text: string): { seconds: number; nanos: number } {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!match) throw new Error(`not an RFC 3339 timestamp: ${text}`);
  const seconds = Date.parse(`${match[1]}${match[3]}`) / 1000;
  return { seconds, nanos: Number((match[2] ?? '').padEnd(9, '0')) };
}

/** A JSON value as a google.protobuf.Value in protobufjs object form. */
function structValue(value: unknown): Json {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(structValue) } };
  if (isRecord(value)) return { structValue: struct(value) };
  throw new Error(`not a JSON value: ${String(value)}`);
}

function struct(object: Json): Json {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, structValue(v)])) };
}

/**
 * protojson and protobufjs' object form agree on field names (lowerCamelCase), int64 strings and
 * base64 bytes; they differ on the well-known types, which protojson writes as plain JSON. This
 * converts the ones AttributeContext has: request.time (Timestamp) and filterMetadata (Struct).
 * Anything fromObject does not know is dropped silently, and then shows up as an input mismatch.
 */
function loaderObject(checkRequest: Json): Json {
  const copy = structuredClone(checkRequest);
  const attributes = isRecord(copy.attributes) ? copy.attributes : {};
  const request = attributes.request;
  if (isRecord(request) && typeof request.time === 'string') request.time = timestampFromRfc3339(request.time);
  for (const key of ['metadataContext', 'routeMetadataContext']) {
    const metadata = attributes[key];
    if (!isRecord(metadata)) continue;
    if (metadata.typedFilterMetadata !== undefined) throw new Error(`${key}.typedFilterMetadata (Any) is not supported by this test`);
    if (isRecord(metadata.filterMetadata)) {
      const filters = metadata.filterMetadata;
      for (const [namespace, value] of Object.entries(filters)) {
        if (!isRecord(value)) throw new Error(`${key}.filterMetadata.${namespace} must be a JSON object`);
        filters[namespace] = struct(value);
      }
    }
  }
  return copy;
}

/** Encodes to protobuf and decodes with the very functions grpc-js' server uses for Check. */
function decodeLikeGrpcJs(checkRequest: Json): Parameters<typeof fromCheckRequest>[0] {
  const check = loadServices().authorization.Check;
  if (!check) throw new Error('the Authorization service has no Check method');
  const wire = check.requestSerialize(loaderObject(checkRequest));
  return check.requestDeserialize(wire) as Parameters<typeof fromCheckRequest>[0];
}

// ---------------------------------------------------------------------------------------------
// 1. Policy evaluation
// ---------------------------------------------------------------------------------------------

describe.each(rows(FIXTURES, (f) => f.name))('policy evaluation: %s', (_title, fixture) => {
  const evaluated = fixture.cases.filter((c) => c.expect_compile_error === undefined);
  const rejected = fixture.cases.filter((c) => c.expect_compile_error !== undefined);

  if (evaluated.length > 0) {
    it.each(rows(evaluated, (c) => `${c.name} [${c.path}]`))('%s', async (_name, testCase) => {
      const engine = await fixtureEngine(fixture, testCase.path);
      const evaluation = engine.evaluate(testCase.input, nowNs());
      // Host builtins turn an error into an undefined call, as OPA's non-strict mode does, so a
      // wrong result may come from a swallowed error: name them in the failure message.
      const swallowed = evaluation.builtinErrors.length > 0 ? `builtin errors: ${evaluation.builtinErrors.join('; ')}` : 'no builtin errors';
      expect({ defined: evaluation.defined, result: evaluation.result }, swallowed).toStrictEqual({ defined: true, result: testCase.expect });
    });
  }

  if (rejected.length > 0) {
    it.each(rows(rejected, (c) => `${c.name} [${c.path}]`))('%s: opa build rejects the policy', async (_name, testCase) => {
      const error: unknown = await buildFixture(fixture).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, 'the policy compiled, but the fixture expects a compile error').toBeInstanceOf(SignalboxError);
      const { code, message } = error as SignalboxError;
      expect(code).toBeOneOf(['policy_build_failed', 'policy_unsupported_builtin']);
      // The policy is compiled from a folder holding only its own file, under its own name, so
      // OPA's message (file:line included) is the fixture's, word for word.
      expect(message).toContain(testCase.expect_compile_error);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// 2. Input construction
// ---------------------------------------------------------------------------------------------

/**
 * Fixtures recorded with opa-envoy-plugin's `proto-descriptor` option, which parses gRPC request
 * bodies into `parsed_body` with a FileDescriptorSet. Signalbox has no such option yet: it treats
 * gRPC bodies as opa-envoy-plugin does without the option (`parsed_body: null`). Their cases are
 * checked against that behaviour — the fixture's input with `parsed_body: null`, and the decision
 * the policy makes on it — so the gap is explicit and the rest of the case is still verified.
 */
const NEEDS_PROTO_DESCRIPTOR = new Set(['grpc-kitchensink']);

/** The input opa-envoy-plugin builds for a case when run without `proto-descriptor`. */
function inputWithoutDescriptor(fixture: string, input: Json): Json {
  return NEEDS_PROTO_DESCRIPTOR.has(fixture) ? { ...input, parsed_body: null } : input;
}

interface InputCase extends FixtureCase {
  readonly fixture: string;
  readonly check_request: Json;
}

const INPUT_CASES: InputCase[] = FIXTURES.flatMap((f) =>
  f.cases.flatMap((c) => (c.check_request ? [{ ...c, fixture: f.name, check_request: c.check_request }] : [])),
);

describe('input construction: CheckRequest -> input, as opa-envoy-plugin builds it', () => {
  let pipeline: DecisionPipeline;
  let engine: PolicyEngine;

  beforeAll(async () => {
    // A probe policy that never looks at the input: the pipeline runs for real (adapter, HTTP
    // facts, identity, buildInput) and the engine spy records the document handed to the policy.
    const bundle = await buildTestBundle(['package probe', '', '# METADATA', '# entrypoint: true', 'allow := true', ''].join('\n'));
    const config = parseConfig('', { SIGNALBOX_BUNDLE: bundle, SIGNALBOX_DECISION: 'probe/allow' }, 'test');
    ({ pipeline, engine } = await createPipeline(config, silentLogger(), noopAuditSink));
  });

  it.each(rows(INPUT_CASES, (c) => `${c.fixture}: ${c.name}`))('%s', async (_name, testCase) => {
    const evaluate = vi.spyOn(engine, 'evaluate');
    try {
      const decision = await pipeline.decide(fromCheckRequest(decodeLikeGrpcJs(testCase.check_request)));
      expect(decision.error, 'the pipeline failed closed before evaluating the policy').toBeUndefined();
      expect(evaluate).toHaveBeenCalledTimes(1);
      // opa-wasm hands the policy JSON.stringify(input), so compare that, not the JS object
      // (an `undefined` member is absent for the policy).
      const seen: unknown = JSON.parse(JSON.stringify(evaluate.mock.calls[0]?.[0]));
      if (!isRecord(seen)) throw new Error('the policy input is not an object');
      // Signalbox's own additions; opa-envoy-plugin has no such keys.
      const { identity: _identity, actor: _actor, content: _content, credentials: _credentials, door: _door, ...envoyInput } = seen;
      expect(envoyInput).toStrictEqual(inputWithoutDescriptor(testCase.fixture, testCase.input));
    } finally {
      evaluate.mockRestore();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 3. End to end through the gRPC server
// ---------------------------------------------------------------------------------------------

/** The parts of Envoy's CheckResponse asserted here, as the proto-loader client decodes them. */
interface WireHeaderOption {
  header?: { key?: string; value?: string };
}

interface WireStructValue {
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values?: WireStructValue[] };
}

interface WireStruct {
  fields?: Record<string, WireStructValue>;
}

interface WireCheckResponse {
  status?: { code?: number };
  okResponse?: {
    headers?: WireHeaderOption[];
    headersToRemove?: string[];
    responseHeadersToAdd?: WireHeaderOption[];
    queryParametersToSet?: { key?: string; value?: string }[];
    queryParametersToRemove?: string[];
  };
  deniedResponse?: { status?: { code?: number }; headers?: WireHeaderOption[]; body?: string };
  dynamicMetadata?: WireStruct;
}

/** What opa-envoy-plugin sends Envoy for a decision (envoyauth/response.go), reduced to plain values. */
interface ExpectedResponse {
  readonly allowed: boolean;
  readonly httpStatus: number;
  readonly body: string;
  readonly headers: readonly string[];
  readonly headersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly string[];
  readonly queryParametersToSet: readonly string[];
  readonly queryParametersToRemove: readonly string[];
  readonly dynamicMetadata: Json;
}

const DECISION_ID_HEADER = 'x-signalbox-decision-id';
const GRPC_OK = 0;
const GRPC_PERMISSION_DENIED = 7;
const DEFAULT_DENY_STATUS = 403;

/** A header map (or list of maps) as sorted "key: value" lines; multi-valued keys give one line each. */
function headerLines(value: unknown): string[] {
  if (value === undefined) return [];
  const maps = Array.isArray(value) ? value : [value];
  const lines: string[] = [];
  for (const map of maps) {
    if (!isRecord(map)) throw new Error(`header map expected, got ${JSON.stringify(map)}`);
    for (const [key, v] of Object.entries(map)) for (const item of Array.isArray(v) ? v : [v]) lines.push(`${key}: ${String(item)}`);
  }
  return lines.sort();
}

function stringList(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`list expected, got ${JSON.stringify(value)}`);
  return value.map(String);
}

/** The plugin's mapping of a decision value, written from its documented behaviour, not from ours. */
function expectedResponse(decision: unknown): ExpectedResponse {
  if (typeof decision === 'boolean') {
    return {
      allowed: decision,
      httpStatus: DEFAULT_DENY_STATUS,
      body: '',
      headers: [],
      headersToRemove: [],
      responseHeadersToAdd: [],
      queryParametersToSet: [],
      queryParametersToRemove: [],
      dynamicMetadata: {},
    };
  }
  if (!isRecord(decision) || typeof decision.allowed !== 'boolean') throw new Error(`not a decision: ${JSON.stringify(decision)}`);
  return {
    allowed: decision.allowed,
    httpStatus: typeof decision.http_status === 'number' ? decision.http_status : DEFAULT_DENY_STATUS,
    body: typeof decision.body === 'string' ? decision.body : '',
    headers: headerLines(decision.headers),
    headersToRemove: stringList(decision.request_headers_to_remove),
    responseHeadersToAdd: headerLines(decision.response_headers_to_add),
    queryParametersToSet: headerLines(decision.query_parameters_to_set),
    queryParametersToRemove: stringList(decision.query_parameters_to_remove),
    dynamicMetadata: isRecord(decision.dynamic_metadata) ? decision.dynamic_metadata : {},
  };
}

function wireValue(value: WireStructValue | undefined): unknown {
  if (value === undefined || value.nullValue !== undefined) return null;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return wireStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(wireValue);
  return null;
}

function wireStruct(struct: WireStruct | undefined): Json {
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, wireValue(v)]));
}

/** Header options as sorted "key: value" lines, without Signalbox's decision-id header (checked apart). */
function wireHeaderLines(options: WireHeaderOption[] | undefined): string[] {
  return (options ?? [])
    .filter((o) => o.header?.key?.toLowerCase() !== DECISION_ID_HEADER)
    .map((o) => `${o.header?.key ?? ''}: ${o.header?.value ?? ''}`)
    .sort();
}

function wireDecisionIdHeader(options: WireHeaderOption[] | undefined): string | undefined {
  return options?.find((o) => o.header?.key?.toLowerCase() === DECISION_ID_HEADER)?.header?.value;
}

/**
 * End to end needs a CheckRequest and a decision to compare with. Every such case runs, not just
 * a sample: a policy that only works at the evaluation layer does not run "unchanged".
 */
const E2E_GROUPS = FIXTURES.flatMap((fixture) => {
  const cases = fixture.cases.filter((c): c is FixtureCase & { check_request: Json } => c.check_request !== undefined && c.expect_compile_error === undefined);
  return [...new Set(cases.map((c) => c.path))].map((path) => ({ fixture, path, cases: cases.filter((c) => c.path === path) }));
});

describe.each(rows(E2E_GROUPS, (g) => `${g.fixture.name} [${g.path}]`))('end to end over gRPC: %s', (_title, group) => {
  let sb: TestSignalbox | undefined;

  beforeAll(async () => {
    const { file } = await buildFixture(group.fixture);
    sb = await startTestSignalbox(capturedLogger().logger, { bundle: file, decision: group.path, clock: nowNs });
  });
  afterAll(async () => {
    await sb?.close();
  });

  it.each(rows(group.cases, (c) => c.name))('%s', async (_name, testCase) => {
    if (!sb) throw new Error('Signalbox did not start');
    const expected = NEEDS_PROTO_DESCRIPTOR.has(group.fixture.name)
      ? (await fixtureEngine(group.fixture, group.path)).evaluate(inputWithoutDescriptor(group.fixture.name, testCase.input), nowNs()).result
      : testCase.expect;
    const want = expectedResponse(expected);
    // The client serialises with the same fromObject the decoding test uses, so it takes the
    // same converted object (camelCase, Timestamp as {seconds, nanos}).
    const response = (await sb.check(loaderObject(testCase.check_request))) as WireCheckResponse;

    const metadata = wireStruct(response.dynamicMetadata);
    const decisionId = metadata.decision_id;
    expect(decisionId, 'dynamicMetadata.decision_id').toMatch(/^[0-9a-f-]{36}$/);
    // Signalbox adds the decision id and the revision that decided to whatever the policy set.
    expect(metadata).toStrictEqual({ ...want.dynamicMetadata, decision_id: decisionId, policy_revision: sb.running.engine.revision });

    if (want.allowed) {
      expect(response.status?.code ?? GRPC_OK, 'status.code').toBe(GRPC_OK);
      expect(response.deniedResponse).toBeUndefined();
      const ok = response.okResponse ?? {};
      expect({
        headers: wireHeaderLines(ok.headers),
        headersToRemove: ok.headersToRemove ?? [],
        responseHeadersToAdd: wireHeaderLines(ok.responseHeadersToAdd),
        queryParametersToSet: (ok.queryParametersToSet ?? []).map((q) => `${q.key ?? ''}: ${q.value ?? ''}`).sort(),
        queryParametersToRemove: ok.queryParametersToRemove ?? [],
      }).toStrictEqual({
        headers: want.headers,
        headersToRemove: want.headersToRemove,
        responseHeadersToAdd: want.responseHeadersToAdd,
        queryParametersToSet: want.queryParametersToSet,
        queryParametersToRemove: want.queryParametersToRemove,
      });
      // Signalbox's one addition on allow: the decision id, upstream and to the client.
      expect(wireDecisionIdHeader(ok.headers)).toBe(decisionId);
      expect(wireDecisionIdHeader(ok.responseHeadersToAdd)).toBe(decisionId);
    } else {
      expect(response.status?.code, 'status.code').toBe(GRPC_PERMISSION_DENIED);
      expect(response.okResponse).toBeUndefined();
      const denied = response.deniedResponse ?? {};
      expect({
        httpStatus: denied.status?.code,
        headers: wireHeaderLines(denied.headers),
        body: denied.body ?? '',
      }).toStrictEqual({ httpStatus: want.httpStatus, headers: want.headers, body: want.body });
      expect(wireDecisionIdHeader(denied.headers)).toBe(decisionId);
    }
  });
});
