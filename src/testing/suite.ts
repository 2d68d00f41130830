/**
 * Decision tables: YAML (or JSON) files named `*_test.yaml` beside a policy, each a suite of
 * cases `request` (short form) or `input` (full document) → `expect`. The format is documented in
 * README, "Testing policies". A malformed file or case is reported against its file and case
 * name, never thrown past the runner: the other cases still run.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SignalboxError } from '../core/errors.js';
import { shortRequestSchema, userSchema, type ShortRequest } from './short-request.js';
import { parseRfc3339Ns } from './simulate.js';
import { isJsonObject } from '../core/json-object.js';

/** Table files: `<name>_test.yaml`, `.yml` or `.json` (the `_test` suffix keeps them out of bundles). */
export const TABLE_FILE = /_test\.(ya?ml|json)$/;

/** The default frozen time when a suite names none, so an unpinned suite is still deterministic. */
export const DEFAULT_NOW = '2026-01-01T00:00:00Z';

const rfc3339 = z.string().refine((text) => {
  try {
    parseRfc3339Ns(text);
    return true;
  } catch {
    return false;
  }
}, 'must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z');

const object = z.record(z.string(), z.unknown());

/** A list of partial objects: each must match some actual entry (order does not matter); null: none. */
const partialList = z.union([z.null(), z.array(object)]);

/** A case's `expect`: every field optional, and only the fields named are checked. */
export const expectSchema = z
  .object({
    allowed: z.boolean().optional(),
    http_status: z.number().int().min(100).max(599).optional(),
    /** The exact list, in order, or `{contains, excludes}`. */
    reasons: z
      .union([
        z.array(z.string()),
        z.object({ contains: z.array(z.string()).optional(), excludes: z.array(z.string()).optional() }).strict(),
      ])
      .optional(),
    /** Header name → value (a list for repeated headers), or null for "absent". Other headers are not checked. */
    headers: z.record(z.string(), z.union([z.string(), z.array(z.string()), z.null()])).optional(),
    /** Request headers the decision removes before forwarding: each listed one must be removed. */
    headers_removed: z.array(z.string().min(1)).optional(),
    /** Subset of the route (provider, model, upstream, credential, fallbacks); null: no route. */
    route: z.union([z.null(), object]).optional(),
    /** Budgets the policy names: each listed one must be named (by the keys given). */
    budgets: partialList.optional(),
    rate_limits: partialList.optional(),
    loop: z.union([z.null(), object]).optional(),
    /** Deny body: the exact text, or a subset of its JSON. */
    body: z.union([z.string(), object]).optional(),
    /** The fail-closed error code (policy_result_invalid, credential_unavailable, ...); null: none. */
    error: z.union([z.string(), z.null()]).optional(),
  })
  .strict();

/** A case's expectations, parsed. */
export type Expectation = z.output<typeof expectSchema>;

/** One case of a table: a short-form `request` or a full `input` (exactly one), and its `expect`. */
export const caseSchema = z
  .object({
    name: z.string().min(1),
    description: z.string().optional(),
    /** true, or the reason: the case is reported as skipped. */
    skip: z.union([z.boolean(), z.string()]).optional(),
    /** Overrides the suite's frozen time for this case. */
    now: rfc3339.optional(),
    /** The short form; merged over the suite's `defaults` first (a null removes a default). */
    request: object.optional(),
    /** A full input document, evaluated directly by the engine (no identity, inspection or enforcement). */
    input: object.optional(),
    expect: expectSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    if ((c.request === undefined) === (c.input === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['request'], message: 'give exactly one of request (short form) or input (full document)' });
    }
  });

/** A valid case, its short-form request already merged over the suite's defaults and parsed. */
export type TableCase = Omit<z.output<typeof caseSchema>, 'request'> & { readonly request?: ShortRequest };

/** A case's request over the defaults: headers merged, null removing a default (token: null means "no token"). */
function mergeRequest(defaults: Record<string, unknown> | undefined, request: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...defaults, ...request };
  if (isJsonObject(defaults?.headers) && isJsonObject(request.headers)) merged.headers = { ...defaults.headers, ...request.headers };
  for (const [key, value] of Object.entries(merged)) if (value === null && key !== 'token') delete merged[key];
  return merged;
}

/**
 * A table file's top level. Cases are checked one by one afterwards ({@link caseSchema}), so one
 * malformed case does not stop the others.
 */
export const suiteSchema = z
  .object({
    suite: z.string().min(1),
    description: z.string().optional(),
    /** Frozen time for every case (the pipeline clock, time.now_ns(), token exp/nbf). */
    now: rfc3339.default(DEFAULT_NOW),
    /** The decision path, when not the config's (policy.decision). */
    decision: z.string().optional(),
    /** Config keys merged over the base config (identity issuer/audience, llm prices, content...). */
    config: object.optional(),
    users: z.record(z.string(), userSchema).default({}),
    /** Host → addresses for tool destinations; unlisted hosts are unresolvable. */
    dns: z.record(z.string(), z.array(z.string())).default({}),
    /** Vault entry names the simulated vault holds. */
    credentials: z.array(z.string()).default([]),
    /** Request fields every case starts from (headers are merged; a case's null removes one). */
    defaults: object.optional(),
    cases: z.array(z.unknown()).min(1, 'a suite needs at least one case'),
  })
  .strict();

/** A suite's settings, without its cases (loaded separately, see {@link LoadedCase}). */
export type Suite = Omit<z.output<typeof suiteSchema>, 'cases'>;

/** A case as loaded: valid, or the reason it is not. */
export type LoadedCase = { readonly ok: true; readonly index: number; readonly case: TableCase } | { readonly ok: false; readonly index: number; readonly name: string; readonly message: string };

/** A table file as loaded: its settings and every case, valid or with the reason it is not. */
export interface LoadedSuite {
  readonly file: string;
  readonly suite: Suite;
  readonly cases: readonly LoadedCase[];
}

/** "cases[2].expect.reasons: message", naming unknown keys. */
export function describeIssue(issue: z.core.$ZodIssue, prefix: string): string {
  const path = issue.path.reduce<string>((text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)), prefix);
  const message = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
  return `${path || '(top level)'}: ${message}`;
}

/** Reads and validates one table file; throws test_suite_invalid naming the file and key. */
export async function loadSuite(file: string): Promise<LoadedSuite> {
  let raw: unknown;
  try {
    const text = await readFile(file, 'utf8');
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const message = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message.split('\n')[0];
    throw new SignalboxError('test_suite_invalid', `${file}: cannot read: ${message}`, { cause: error });
  }
  const parsed = suiteSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SignalboxError('test_suite_invalid', `${file}: ${parsed.error.issues.map((i) => describeIssue(i, '')).join('; ')}`);
  }
  const { cases, ...suite } = parsed.data;
  const names = new Set<string>();
  const loaded = cases.map((rawCase, index): LoadedCase => {
    const name = (rawCase as { name?: unknown })?.name;
    const label = typeof name === 'string' && name !== '' ? name : `cases[${index}]`;
    const result = caseSchema.safeParse(rawCase);
    if (!result.success) {
      return { ok: false, index, name: label, message: result.error.issues.map((i) => describeIssue(i, `cases[${index}]`)).join('; ') };
    }
    let request: ShortRequest | undefined;
    if (result.data.request !== undefined) {
      const parsedRequest = shortRequestSchema.safeParse(mergeRequest(suite.defaults, result.data.request));
      if (!parsedRequest.success) {
        return { ok: false, index, name: label, message: parsedRequest.error.issues.map((i) => describeIssue(i, `cases[${index}].request`)).join('; ') };
      }
      request = parsedRequest.data;
    }
    if (names.has(result.data.name)) return { ok: false, index, name: label, message: `cases[${index}].name: "${label}" is used by an earlier case` };
    names.add(result.data.name);
    const { request: _raw, ...rest } = result.data;
    return { ok: true, index, case: request ? { ...rest, request } : rest };
  });
  return { file, suite, cases: loaded };
}
