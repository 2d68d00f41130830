/**
 * The LiteLLM door: LiteLLM's Generic Guardrail API (`guardrail: generic_guardrail_api`), and
 * LiteLLM's `generic_api` logging callback for settling the budget hold with the usage LiteLLM saw.
 *
 * Contract (LiteLLM 1.104.0, `litellm/proxy/guardrails/guardrail_hooks/generic_guardrail_api/`
 * and `litellm/types/proxy/guardrails/guardrail_hooks/generic_guardrail_api.py`):
 *
 * - LiteLLM POSTs `{input_type: "request" | "response", litellm_call_id, litellm_trace_id, texts,
 *   images, tools, tool_calls, structured_messages, model, request_data, request_headers,
 *   litellm_version, additional_provider_specific_params}` to `<api_base>/beta/litellm_basic_guardrail_api`.
 *   `request_data` holds only LiteLLM key metadata (`user_api_key_*`), never the LLM request;
 *   `request_headers` are the client's headers with every value outside LiteLLM's allowlist (and
 *   the guardrail's `extra_headers`) replaced by `"[present]"`; `Authorization` and LiteLLM's
 *   other key headers are removed before that (`clean_headers` in `litellm/proxy/litellm_pre_call_utils.py`),
 *   so the caller's token travels as {@link LITELLM_TOKEN_HEADER}.
 * - It expects `{action: "NONE" | "BLOCKED" | "GUARDRAIL_INTERVENED", blocked_reason?, texts?,
 *   structured_messages?}`. `texts` replaces the texts it sent, index for index;
 *   `structured_messages`, when a row differs from what was sent, replaces those messages (the
 *   only way to rewrite tool-call arguments). There is no status: a block is LiteLLM's own error.
 * - A non-2xx answer fails the call (the default `fail_on_error: true`), so errors fail closed.
 *
 * Pre-call (`input_type: "request"`) is decided: the texts, structured messages, tool calls and
 * tools are presented to the pipeline as one OpenAI chat completions request. Post-call
 * (`"response"`) carries the answer's texts but no usage, so it is answered NONE and settles
 * nothing: the usage arrives through the `generic_api` logging callback (StandardLoggingPayload,
 * `litellm_call_id`, `prompt_tokens`, `completion_tokens`, `model`, `status`), posted to
 * {@link LITELLM_USAGE_PATH}. The decision id of a call is remembered per replica, keyed by
 * LiteLLM's call id, in a bounded map with a TTL.
 *
 * Reading the guardrail request and presenting it as a chat completions body is litellm-request.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignalboxError, describeCause } from '../../core/errors.js';
import type { DecisionPipeline } from '../../decide/decide.js';
import type { Decision } from '../../decide/decision.js';
import type { ReportService } from '../../enforce/report.js';
import type { Logger } from '../../core/log.js';
import { decisionRequestFromHttp } from './http-request.js';
import { LITELLM_TOKEN_HEADER, chatBody, parseGuardrailRequest, type GuardrailRequest } from './litellm-request.js';
import { readLimitedBody } from './read-body.js';
import { principalOfSocket, withPeerPrincipal } from '../peer.js';
import { isJsonObject } from '../../core/json-object.js';

/** Where LiteLLM sends guardrail checks (it appends this to the guardrail's `api_base`). */
export const LITELLM_GUARDRAIL_PATH = '/beta/litellm_basic_guardrail_api';
/** Where LiteLLM's `generic_api` logging callback sends its StandardLoggingPayload batches. */
export const LITELLM_USAGE_PATH = '/v1/litellm/usage';

/** The door guardrail checks are decided and audited as. */
export const LITELLM_DOOR = 'litellm.generic_guardrail_api';
const USAGE_DOOR = 'litellm.usage';
/** The LLM API the guardrail input is presented as (the policy's route grants see this path). */
const LLM_PATH = '/v1/chat/completions';
const MAX_GUARDRAIL_BYTES = 16 * 1024 * 1024;
const MAX_USAGE_BYTES = 16 * 1024 * 1024;

/** What the door needs from the HTTP server. */
export interface LiteLlmContext {
  readonly pipeline: DecisionPipeline;
  readonly reports: ReportService;
  readonly logger: Logger;
}

type Action = 'NONE' | 'BLOCKED' | 'GUARDRAIL_INTERVENED';

interface GuardrailAnswer {
  readonly action: Action;
  readonly blocked_reason?: string;
  readonly texts?: string[];
  readonly structured_messages?: unknown[];
}

/**
 * LiteLLM call id → decision id, for settling holds when the usage log arrives. Bounded and
 * TTL'd; entries are inserted in time order, so expiry and eviction both trim from the front.
 * Per replica: a usage log that reaches another replica finds nothing, and the hold expires as
 * `budgets.expired_holds` says (by default charging its full estimate).
 */
export class CallLedger {
  private readonly entries = new Map<string, { decisionId: string; expiresAt: number }>();

  constructor(
    private readonly maxEntries = 100_000,
    private readonly ttlMs = 60 * 60 * 1000,
  ) {}

  remember(callId: string, decisionId: string, nowMs: number): void {
    this.entries.delete(callId);
    this.entries.set(callId, { decisionId, expiresAt: nowMs + this.ttlMs });
    this.trim(nowMs);
  }

  /** The decision for a call id, removed from the ledger (each call settles once). */
  take(callId: string, nowMs: number): string | undefined {
    this.trim(nowMs);
    const entry = this.entries.get(callId);
    if (!entry) return undefined;
    this.entries.delete(callId);
    return entry.decisionId;
  }

  get size(): number {
    return this.entries.size;
  }

  private trim(nowMs: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > nowMs && this.entries.size <= this.maxEntries) break;
      this.entries.delete(key);
    }
  }
}

/** One ledger per running Signalbox (keyed by its ReportService), so test instances stay apart. */
const ledgers = new WeakMap<ReportService, CallLedger>();
function ledgerFor(reports: ReportService): CallLedger {
  let ledger = ledgers.get(reports);
  if (!ledger) {
    ledger = new CallLedger();
    ledgers.set(reports, ledger);
  }
  return ledger;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The deny's message from Signalbox's JSON error body, when it has one. */
function denyMessage(decision: Decision): string | undefined {
  try {
    const body = JSON.parse(decision.body) as unknown;
    if (isJsonObject(body) && isJsonObject(body.error) && typeof body.error.message === 'string') return body.error.message;
    if (isJsonObject(body) && typeof body.message === 'string') return body.message;
  } catch {
    // not JSON: the reasons say enough
  }
  return undefined;
}

/**
 * LiteLLM's blocked_reason. A 401 for a call that carried no token gets a hint on how to send
 * one through LiteLLM (which never forwards Authorization to guardrails); it depends on what the
 * request carried, not on how a policy names the reason.
 */
function blockedReason(decision: Decision, request: Pick<GuardrailRequest, 'headers' | 'withheld'> | undefined): string {
  const reasons = decision.reasons.length > 0 ? decision.reasons.join(', ') : (decision.error ?? 'denied');
  const message = denyMessage(decision);
  let text = `Signalbox denied the request (${decision.httpStatus} ${reasons})${message ? `: ${message}` : ''} [decision ${decision.decisionId}]`;
  const withheld = request?.withheld ?? [];
  if (request && decision.httpStatus === 401 && request.headers.authorization === undefined) {
    text += withheld.includes(LITELLM_TOKEN_HEADER)
      ? `; LiteLLM withheld the ${LITELLM_TOKEN_HEADER} header: list it in the guardrail's extra_headers`
      : `; send the caller's token as ${LITELLM_TOKEN_HEADER}: Bearer <jwt> (LiteLLM never forwards Authorization to guardrails)`;
  }
  return text;
}

/**
 * Every string of the body Signalbox decided on, paired with what the pipeline's redaction made
 * of it (the same place in its upstream body), so LiteLLM's texts get exactly the masking the
 * messages got. Walked without recursion: the body holds what the caller sent.
 */
function maskedStrings(original: unknown, masked: unknown): Map<string, string> {
  const pairs = new Map<string, string>();
  const pending: [unknown, unknown][] = [[original, masked]];
  while (pending.length > 0) {
    const [before, after] = pending.pop() as [unknown, unknown];
    if (typeof before === 'string' && typeof after === 'string') {
      if (before !== after) pairs.set(before, after);
    } else if (Array.isArray(before) && Array.isArray(after)) {
      before.forEach((item, i) => pending.push([item, after[i]]));
    } else if (isJsonObject(before) && isJsonObject(after)) {
      for (const [key, item] of Object.entries(before)) pending.push([item, after[key]]);
    }
  }
  return pairs;
}

/**
 * Maps an allowed decision with `redact` back to LiteLLM: its texts (every one of them is in the
 * body the pipeline masked) and its structured messages, for tool calls.
 */
function intervention(decision: Decision, req: GuardrailRequest, body: Record<string, unknown>, structuredCount: number): GuardrailAnswer {
  if (decision.upstreamBody === undefined) return { action: 'NONE' };
  let upstream: unknown;
  try {
    upstream = JSON.parse(decision.upstreamBody) as unknown;
  } catch {
    return { action: 'NONE' }; // the pipeline only returns JSON bodies for JSON requests
  }
  const masked = maskedStrings(body, upstream);
  const texts = req.texts.map((text) => masked.get(text) ?? text);
  let changed = texts.some((text, i) => text !== req.texts[i]);
  let structured: unknown[] | undefined;
  const rows = structuredCount > 0 && isJsonObject(upstream) && Array.isArray(upstream.messages) ? upstream.messages.slice(0, structuredCount) : undefined;
  if (rows && rows.length === structuredCount && JSON.stringify(rows) !== JSON.stringify(req.structuredMessages)) {
    structured = rows;
    changed = true;
  }
  if (!changed) return { action: 'NONE' };
  return { action: 'GUARDRAIL_INTERVENED', texts, ...(structured ? { structured_messages: structured } : {}) };
}

/** `POST /beta/litellm_basic_guardrail_api`: one guardrail check from LiteLLM. */
export async function handleLiteLlmGuardrail(req: IncomingMessage, res: ServerResponse, context: LiteLlmContext): Promise<void> {
  const { body: raw, overLimit } = await readLimitedBody(req, MAX_GUARDRAIL_BYTES);
  let request: GuardrailRequest;
  try {
    if (overLimit) throw new SignalboxError('request_malformed', `the guardrail request is larger than ${MAX_GUARDRAIL_BYTES} bytes`);
    request = parseGuardrailRequest(raw);
  } catch (error) {
    // Unreadable is a deny, audited like any other decision; LiteLLM fails the call on BLOCKED.
    const decision = context.pipeline.rejectUnreadable(LITELLM_DOOR, error);
    json(res, 200, { action: 'BLOCKED', blocked_reason: blockedReason(decision, undefined) } satisfies GuardrailAnswer);
    return;
  }
  if (request.inputType === 'response') {
    // The answer's texts, without usage: settlement comes from the usage log.
    json(res, 200, { action: 'NONE' } satisfies GuardrailAnswer);
    return;
  }
  const { body, structuredCount } = chatBody(request);
  const decisionRequest = withPeerPrincipal(decisionRequestFromHttp(
    LITELLM_DOOR,
    {
      method: 'POST',
      path: LLM_PATH,
      ...(request.headers.host ? { host: request.headers.host } : {}),
      headers: { ...request.headers, 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(body), 'utf8'),
      ...(request.callId ? { contextExtensions: { litellm_call_id: request.callId } } : {}),
    },
    true,
  ), principalOfSocket(req.socket), true);
  const decision = await context.pipeline.decide(decisionRequest);
  if (!decision.allowed) {
    json(res, 200, { action: 'BLOCKED', blocked_reason: blockedReason(decision, request) } satisfies GuardrailAnswer);
    return;
  }
  if (request.callId) ledgerFor(context.reports).remember(request.callId, decision.decisionId, Date.now());
  json(res, 200, decision.redact ? intervention(decision, request, body, structuredCount) : ({ action: 'NONE' } satisfies GuardrailAnswer));
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** The usage block of one StandardLoggingPayload, in OpenAI chat terms. */
function payloadUsage(entry: Record<string, unknown>): Record<string, unknown> {
  const response = isJsonObject(entry.response) ? entry.response : undefined;
  const usage = response && isJsonObject(response.usage) ? response.usage : undefined;
  const details = usage && isJsonObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : undefined;
  const cached = details ? count(details.cached_tokens) : undefined;
  return {
    prompt_tokens: count(entry.prompt_tokens) ?? count(usage?.prompt_tokens) ?? 0,
    completion_tokens: count(entry.completion_tokens) ?? count(usage?.completion_tokens) ?? 0,
    ...(cached !== undefined ? { prompt_tokens_details: { cached_tokens: cached } } : {}),
  };
}

function upstreamStatus(entry: Record<string, unknown>): number | undefined {
  const info = isJsonObject(entry.error_information) ? entry.error_information : undefined;
  const code = info ? Number(info.error_code) : NaN;
  return Number.isInteger(code) && code >= 100 && code <= 599 ? code : undefined;
}

type UsageResult = { readonly litellm_call_id: string | null; readonly outcome: string; readonly decision_id?: string; readonly error?: string };

async function settleEntry(entry: unknown, context: LiteLlmContext, ledger: CallLedger): Promise<UsageResult> {
  if (!isJsonObject(entry)) return { litellm_call_id: null, outcome: 'ignored', error: 'not an object' };
  const callId = typeof entry.litellm_call_id === 'string' ? entry.litellm_call_id : typeof entry.id === 'string' ? entry.id : null;
  if (callId === null) return { litellm_call_id: null, outcome: 'ignored', error: 'no litellm_call_id' };
  const decisionId = ledger.take(callId, Date.now());
  if (decisionId === undefined) return { litellm_call_id: callId, outcome: 'unknown_call' };
  const failed = entry.status === 'failure';
  const status = upstreamStatus(entry);
  const base = {
    decision_id: decisionId,
    usage: payloadUsage(entry),
    ...(failed ? { outcome: 'failed' } : {}),
    ...(typeof entry.custom_llm_provider === 'string' && entry.custom_llm_provider !== '' ? { provider: entry.custom_llm_provider } : {}),
    ...(status !== undefined ? { upstream_status: status } : {}),
  };
  const model = typeof entry.model === 'string' && entry.model !== '' ? entry.model : undefined;
  try {
    let result;
    try {
      result = await context.reports.report(USAGE_DOOR, model ? { ...base, model } : base);
    } catch (error) {
      // A deployment model name the price table does not know: price it as the model reserved for.
      if (!(model && error instanceof SignalboxError && error.code === 'report_malformed')) throw error;
      result = await context.reports.report(USAGE_DOOR, base);
    }
    return { litellm_call_id: callId, decision_id: decisionId, outcome: result.outcome };
  } catch (error) {
    const code = error instanceof SignalboxError ? error.code : 'internal_error';
    if (code !== 'hold_not_found') {
      context.logger.warn({ decision_id: decisionId, litellm_call_id: callId, code, cause: describeCause(error) }, 'LiteLLM usage not settled');
    }
    return { litellm_call_id: callId, decision_id: decisionId, outcome: 'not_settled', error: code };
  }
}

/** A JSON array, one JSON object, or NDJSON. Throws when it is none of them. */
function parseEntries(text: string): unknown[] {
  try {
    const parsed = JSON.parse(text) as unknown;
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as unknown);
  }
}

/**
 * `POST /v1/litellm/usage`: LiteLLM's `generic_api` logging callback, in any of its formats
 * (`json_array`, `ndjson`, `single`). Each entry settles the hold of the decision made for its
 * `litellm_call_id`; entries for calls this replica did not decide are counted and skipped.
 */
export async function handleLiteLlmUsage(req: IncomingMessage, res: ServerResponse, context: LiteLlmContext): Promise<void> {
  const { body: raw, overLimit } = await readLimitedBody(req, MAX_USAGE_BYTES);
  if (overLimit) {
    json(res, 413, { error: { code: 'report_malformed', message: `body larger than ${MAX_USAGE_BYTES} bytes` } });
    return;
  }
  const text = raw.toString('utf8').trim();
  let entries: unknown[];
  try {
    entries = text === '' ? [] : parseEntries(text);
  } catch {
    json(res, 400, { error: { code: 'report_malformed', message: 'the body is not JSON, a JSON array or NDJSON' } });
    return;
  }
  const ledger = ledgerFor(context.reports);
  const results: UsageResult[] = [];
  for (const entry of entries) results.push(await settleEntry(entry, context, ledger));
  json(res, 200, { results });
}
