/**
 * `signalbox eval`: one request (a full input, or the short form decided by the service's
 * pipeline) → the decision, its reasons, headers, route, the limits the policy named and what
 * enforcement reserved, the input the policy saw (secrets masked), and, with `--explain`, which
 * rules contributed, from OPA's trace of the same bundle's Rego (WASM gives no trace).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { maskInput, MASK } from '../audit/mask.js';
import type { SignalboxConfig } from '../config/schema.js';
import type { EnforcementOutcome } from '../enforce/enforcer.js';
import { microToUsd } from '../core/money.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { shortRequestSchema, type ShortRequest } from './short-request.js';
import { Simulation } from './simulate.js';
import { readBundle } from '../bundles/bundle.js';
import { PolicyEngine } from '../policy/engine.js';
import { interpretResult, type PolicyVerdict } from '../policy/result.js';
import { bundleVerification } from '../bundles/signing.js';
import { maskedHeaders } from '../app/app.js';
import { resolveBundlePath } from '../core/paths.js';
import { actualDecision, failedDecision, type ActualDecision } from './expect.js';
import { describeIssue } from './suite.js';
import { explainTrace, staleSources, type ExplainMode } from './topdown.js';

/**
 * What `signalbox eval` decides: a full input or a short-form request, against which bundle and
 * decision, at which time, and how much trace to show.
 */
export interface ExplainOptions {
  readonly config: SignalboxConfig;
  readonly logger: Logger;
  /** A full input document… */
  readonly input?: unknown;
  /** …or the short form. */
  readonly request?: ShortRequest;
  readonly bundle?: string;
  readonly decision?: string;
  readonly nowNs: bigint;
  readonly explain?: ExplainMode;
  /** The policy folder the bundle was built from, for the trace (default: policies/<bundle name>). */
  readonly src?: string;
}

/**
 * Everything `signalbox eval` prints (as text or JSON): the decision, what it was built from, and
 * optionally the OPA trace.
 */
export interface ExplainReport {
  readonly decision: string;
  readonly revision: string;
  readonly now: string;
  readonly door?: string;
  readonly allowed: boolean;
  readonly http_status: number;
  readonly reasons: readonly string[];
  readonly error?: { code: string; message: string };
  readonly headers: ActualDecision['headers'];
  readonly request_headers_to_remove: readonly string[];
  readonly route: ActualDecision['route'];
  readonly budgets: ActualDecision['budgets'];
  readonly rate_limits: ActualDecision['rate_limits'];
  readonly loop: ActualDecision['loop'];
  /** The estimate Signalbox would reserve (input.llm), or the policy's own cost_usd. */
  readonly cost_usd: number | null;
  /** What enforcement did (short form only: the pipeline reserved against an empty store). */
  readonly enforcement: Record<string, unknown> | null;
  readonly result: unknown;
  readonly builtin_errors: readonly string[];
  readonly eval_ns: number | null;
  /** The input the policy saw, secrets and bodies masked as in the audit trail. */
  readonly input: Record<string, unknown>;
  readonly rules?: readonly { rule: string; location: string }[];
  readonly trace?: string;
  /** Set when the sources traced are not the ones the bundle was built from. */
  readonly trace_warning?: string;
}

/** Reads a short-form request file (YAML or JSON); test_suite_invalid names the bad key. */
export async function readRequestFile(file: string): Promise<ShortRequest> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(file, 'utf8'));
  } catch (error) {
    throw new SignalboxError('test_suite_invalid', `--request ${file}: cannot read: ${describeCause(error).split('\n')[0]}`, { cause: error });
  }
  const parsed = shortRequestSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new SignalboxError('test_suite_invalid', `--request ${file}: ${parsed.error.issues.map((i) => describeIssue(i, '')).join('; ')}`);
  return parsed.data;
}

function rfc3339(ns: bigint): string {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

function enforcementView(outcome: EnforcementOutcome | undefined): Record<string, unknown> | null {
  if (!outcome) return null;
  switch (outcome.kind) {
    case 'reserved':
      return { outcome: 'reserved', reserved_usd: microToUsd(outcome.amountMicroUsd), budgets: outcome.budgets };
    case 'denied':
      return { outcome: 'denied', reason: outcome.reason, retry_after_s: outcome.retryAfterS, ...outcome.detail };
    case 'estimate_unavailable':
      return { outcome: 'estimate_unavailable' };
    case 'store_unavailable':
      return { outcome: 'store_unavailable', fail_open: outcome.failOpen };
  }
}

/** Replaces every occurrence of each secret in `text` (tokens can surface in a trace). */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets.filter((s) => s.length >= 8).sort((a, b) => b.length - a.length)) out = out.split(secret).join(MASK);
  return out;
}

/** The values of the masked headers in an input, and the bare tokens behind a scheme. */
function secretsOf(input: Record<string, unknown>, maskHeaders: ReadonlySet<string>): string[] {
  const headers = (input.attributes as { request?: { http?: { headers?: Record<string, unknown> } } } | undefined)?.request?.http?.headers ?? {};
  const secrets: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!maskHeaders.has(name.toLowerCase()) || typeof value !== 'string') continue;
    secrets.push(value, ...value.split(/\s+/));
  }
  return secrets;
}

function costOf(input: Record<string, unknown>, result: unknown): number | null {
  if (result && typeof result === 'object' && typeof (result as { cost_usd?: unknown }).cost_usd === 'number') return (result as { cost_usd: number }).cost_usd;
  const estimate = (input.llm as { estimated_cost_usd?: unknown } | undefined)?.estimated_cost_usd;
  return typeof estimate === 'number' ? estimate : null;
}

/** Decides one request and describes how; throws only for a bad bundle, config or request file. */
export async function explainDecision(options: ExplainOptions): Promise<ExplainReport> {
  const config = options.config;
  const decision = options.decision ?? config.policy.decision;
  const bundlePath = resolveBundlePath(options.bundle ?? config.policy.bundle);
  const maskHeaders = maskedHeaders(config);
  let engine: PolicyEngine;
  let input: Record<string, unknown>;
  let actual: ActualDecision;
  let verdictHeadersToRemove: readonly string[] = [];
  let result: unknown;
  let error: { code: string; message: string } | undefined;
  let enforcement: Record<string, unknown> | null = null;
  let builtinErrors: readonly string[] = [];
  let evalNs: number | null = null;
  let door: string | undefined;
  if (options.request) {
    const sim = await Simulation.create({ ...config, policy: { ...config.policy, bundle: bundlePath, decision } }, options.logger, { nowNs: options.nowNs });
    try {
      const trace = await sim.decide(options.request);
      engine = sim.engine;
      input = trace.input;
      result = trace.result;
      door = (trace.input.door as { name?: string } | undefined)?.name;
      actual = actualDecision(trace.decision, trace.result);
      verdictHeadersToRemove = trace.decision.requestHeadersToRemove;
      enforcement = enforcementView(trace.enforcement);
      if (trace.decision.error) {
        // The pipeline logs the cause; evaluate again to show it.
        let message: string = trace.decision.error;
        try {
          interpretResult(engine.evaluate(input, options.nowNs));
        } catch (caught) {
          if (caught instanceof SignalboxError && caught.code === trace.decision.error) message = caught.message;
        }
        error = { code: trace.decision.error, message };
      }
      const evaluation = (() => {
        try {
          return engine.evaluate(input, options.nowNs);
        } catch {
          return undefined;
        }
      })();
      builtinErrors = evaluation?.builtinErrors ?? [];
      evalNs = evaluation?.evalNs ?? null;
    } finally {
      await sim.close();
    }
  } else {
    const bundle = await readBundle(bundlePath, { verification: bundleVerification(config.policy.verification) });
    engine = await PolicyEngine.create(bundle, { entrypoint: decision, maxMemoryMiB: config.policy.max_memory_mib });
    input = (options.input ?? {}) as Record<string, unknown>;
    let verdict: PolicyVerdict | undefined;
    try {
      const evaluation = engine.evaluate(input, options.nowNs);
      result = evaluation.result ?? null;
      builtinErrors = evaluation.builtinErrors;
      evalNs = evaluation.evalNs;
      verdict = interpretResult(evaluation);
    } catch (caught) {
      const e = caught instanceof SignalboxError ? caught : new SignalboxError('internal_error', describeCause(caught));
      error = { code: e.code, message: e.message };
      result ??= null;
    }
    actual = verdict
      ? actualDecision({ ...verdict, decisionId: '', revision: engine.revision }, result)
      : failedDecision(error?.code ?? 'internal_error');
    verdictHeadersToRemove = verdict?.requestHeadersToRemove ?? [];
  }
  const report: ExplainReport = {
    decision: engine.entrypoint,
    revision: engine.revision,
    now: rfc3339(options.nowNs),
    ...(door ? { door } : {}),
    allowed: actual.allowed,
    http_status: actual.http_status,
    reasons: actual.reasons,
    ...(error ? { error } : {}),
    headers: actual.headers,
    request_headers_to_remove: verdictHeadersToRemove,
    route: actual.route,
    budgets: actual.budgets,
    rate_limits: actual.rate_limits,
    loop: actual.loop,
    cost_usd: costOf(input, result),
    enforcement,
    result: result ?? null,
    builtin_errors: builtinErrors,
    eval_ns: evalNs,
    input: maskInput(input, maskHeaders),
  };
  if (!options.explain) return report;
  const src = options.src ?? defaultSources(bundlePath);
  if (!src || !existsSync(src)) {
    throw new SignalboxError('policy_build_failed', `--explain needs the Rego sources of ${bundlePath}: give --src DIR`);
  }
  const warning = await staleSources(src, engine.bundle);
  const { trace, rules } = await explainTrace(src, engine.entrypoint, input, options.nowNs, options.explain);
  const secrets = secretsOf(input, maskHeaders);
  return { ...report, rules, ...(trace ? { trace: redactSecrets(trace, secrets) } : {}), ...(warning ? { trace_warning: warning } : {}) };
}

/** bundles/<name>.tar.gz → policies/<name> beside it (the layout `signalbox build` uses). */
function defaultSources(bundlePath: string): string | undefined {
  const match = /^(.*)[\\/]bundles[\\/]([^\\/]+)\.tar\.gz$/.exec(bundlePath);
  return match ? join(match[1] as string, 'policies', match[2] as string) : undefined;
}

function block(title: string, value: unknown): string[] {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  return [`${title}:`, ...text.split('\n').map((l) => `  ${l}`)];
}

/** The report for people: the answer first, then why, then the input. */
export function textExplain(report: ExplainReport): string {
  const lines = [
    `decision:  ${report.allowed ? 'ALLOW' : 'DENY'} (${report.http_status})`,
    `reasons:   ${report.reasons.join(', ') || '(none)'}`,
    ...(report.error ? [`error:     ${report.error.code}: ${report.error.message}`] : []),
    `policy:    ${report.decision} @ ${report.revision}`,
    `now:       ${report.now}${report.door ? `   door: ${report.door}` : ''}`,
  ];
  const headers = Object.entries(report.headers);
  if (headers.length > 0) {
    lines.push(report.allowed ? 'headers set upstream:' : 'headers sent to the client:');
    for (const [name, value] of headers) lines.push(`  ${name}: ${Array.isArray(value) ? value.join(', ') : value}`);
  }
  if (report.request_headers_to_remove.length > 0) lines.push(`headers removed: ${report.request_headers_to_remove.join(', ')}`);
  if (report.route) lines.push(...block('route', report.route));
  if (report.budgets.length > 0) {
    lines.push('budgets named:');
    for (const b of report.budgets) lines.push(`  ${String(b.scope)}  ${String(b.window)}  $${String(b.limit_usd)}`);
  }
  if (report.rate_limits.length > 0) lines.push(...block('rate limits named', report.rate_limits));
  if (report.loop) lines.push(...block('loop check', report.loop));
  if (report.cost_usd !== null) lines.push(`cost to reserve: $${report.cost_usd}`);
  if (report.enforcement) lines.push(...block('enforcement (empty store)', report.enforcement));
  if (report.builtin_errors.length > 0) lines.push(...block('builtin errors', report.builtin_errors));
  if (report.trace_warning) lines.push(`warning: ${report.trace_warning}`);
  if (report.rules) {
    lines.push('rules that contributed (OPA topdown trace):');
    for (const r of report.rules) lines.push(`  ${r.location.padEnd(22)} ${r.rule}`);
  }
  if (report.trace) lines.push('trace:', ...report.trace.trimEnd().split('\n').map((l) => `  ${l}`));
  lines.push(...block('input (secrets and bodies masked)', report.input));
  return `${lines.join('\n')}\n`;
}
