/**
 * One answer on its way back (doors that see responses: Envoy ext_proc), from its headers to its
 * last byte: which answers are read and how (a JSON answer whole, an event stream chunk by
 * chunk), then scan → judge (response.ts) → redact or block → filter MCP tool lists → settle the
 * hold from the usage the answer reports → record. Transport-free: the door maps each step to
 * its wire.
 */
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { contentFacts, type ContentOptions } from '../inspect/content/facts.js';
import { redactBody } from '../inspect/content/redact.js';
import type { Finding } from '../inspect/content/scan.js';
import { countTextTokens, encodingForModel } from '../inspect/llm/tokenizer.js';
import { bufferedResponseFacts, mcpMessageFacts, removeTools, type ResponseApi } from '../inspect/response/buffered.js';
import { StreamGuard } from '../inspect/response/stream-guard.js';
import type { ProviderUsage } from '../inspect/response/usage.js';
import type { HeaderEntry } from '../policy/result.js';
import type { DecisionTrace } from './decide.js';
import type { ResponseContext, ResponseOutcome, ResponsePipeline, ResponseVerdict } from './response.js';

/** How the door should have Envoy send the answer's body. */
export type AnswerBodyMode = 'NONE' | 'BUFFERED' | 'STREAMED';

/** What to do with the answer's headers, and how to read its body. */
export interface AnswerPlan {
  readonly body: AnswerBodyMode;
  readonly set: readonly HeaderEntry[];
  readonly remove: readonly string[];
}

/** What to do with one body message. */
export type AnswerStep =
  | { readonly kind: 'pass'; readonly body?: Buffer; readonly set?: readonly HeaderEntry[] }
  | {
      readonly kind: 'blocked';
      readonly reasons: readonly string[];
      /** Buffered: what the client gets instead of the answer. */
      readonly immediate?: { readonly status: number; readonly headers: readonly HeaderEntry[]; readonly body: string };
      /** Streamed: the bytes that end the stream (an error event). */
      readonly body?: Buffer;
    };

/** One answer, step by step, as the door sees it. */
export interface AnswerStream {
  headers(status: number, headers: Readonly<Record<string, string>>, endOfStream: boolean): AnswerPlan;
  body(chunk: Buffer, endOfStream: boolean): Promise<AnswerStep>;
  /** The client or gateway went away: settle what was delivered, record it. */
  abort(): void;
}

/** The response API a request's answer will speak, from the request's input, or undefined. */
function answerApi(input: Readonly<Record<string, unknown>>): ResponseApi | 'openai.embeddings' | undefined {
  const llm = input.llm as { api?: string } | undefined;
  if (llm?.api === 'openai.chat' || llm?.api === 'openai.responses' || llm?.api === 'anthropic.messages' || llm?.api === 'openai.embeddings') return llm.api;
  const body = input.parsed_body as { jsonrpc?: unknown; method?: unknown } | undefined;
  if (body && typeof body === 'object' && body.jsonrpc === '2.0' && typeof body.method === 'string') return 'mcp';
  return undefined;
}

/** The members of a buffered LLM answer that hold its output, counted when the provider gave no usage. */
const OUTPUT_MEMBER: Record<string, string> = { 'openai.chat': 'choices', 'openai.responses': 'output', 'anthropic.messages': 'content' };

/** Starts the response side of allowed requests; one per server. */
export class AnswerPipeline {
  constructor(
    private readonly responses: ResponsePipeline,
    private readonly content: ContentOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * The answer's handler, or undefined when there is nothing to do with it: no budget hold to
   * settle and not an LLM or MCP answer to judge.
   */
  begin(trace: DecisionTrace): AnswerStream | undefined {
    const decision = trace.decision;
    const api = answerApi(trace.input);
    const held = trace.enforcement?.kind === 'reserved';
    if (!held && api === undefined) return undefined;
    const context: ResponseContext = { decisionId: decision.decisionId, door: decisionDoor(trace), input: trace.input, held };
    return new Answer(this.responses, this.content, this.logger, context, api, decision.responseHeadersToAdd);
  }
}

function decisionDoor(trace: DecisionTrace): string {
  const door = trace.input.door as { name?: unknown } | undefined;
  return typeof door?.name === 'string' ? door.name : 'unknown';
}

class Answer implements AnswerStream {
  private status = 0;
  private stream = false;
  private guard: StreamGuard | undefined;
  private findings: Finding[] = [];
  private blocked = false;
  private done = false;
  private readonly reasons = new Set<string>();
  private redactions = 0;
  /** What the response rule last said to mask in a stream (judged again as findings appear). */
  private redact: ResponseVerdict['redact'];
  /** MCP tools an event-stream tools/list may not offer. */
  private readonly toolsRemoved = new Set<string>();

  constructor(
    private readonly responses: ResponsePipeline,
    private readonly content: ContentOptions,
    private readonly logger: Logger,
    private readonly context: ResponseContext,
    private readonly api: ResponseApi | 'openai.embeddings' | undefined,
    private readonly headersToAdd: readonly HeaderEntry[],
  ) {}

  headers(status: number, headers: Readonly<Record<string, string>>, endOfStream: boolean): AnswerPlan {
    this.status = status;
    const type = (headers['content-type'] ?? '').toLowerCase();
    if (endOfStream || (!type.includes('json') && !type.startsWith('text/event-stream'))) {
      // Nothing to read: an error answer settles at zero (providers do not bill them); any
      // other answer leaves the hold to expire at its estimate.
      void this.finish(status >= 400 ? 'error_response' : 'none', undefined);
      return { body: 'NONE', set: this.headersToAdd, remove: [] };
    }
    if (type.startsWith('text/event-stream') && this.api !== undefined && this.api !== 'openai.embeddings') {
      this.stream = true;
      const request = this.context.input.parsed_body as { id?: unknown } | undefined;
      const requestId = typeof request?.id === 'string' || typeof request?.id === 'number' ? request.id : null;
      this.guard = new StreamGuard({ api: this.api, model: this.model(), requestId });
      // Chunks may be rewritten (masked, held back), so the length Envoy announced would lie.
      return { body: 'STREAMED', set: this.headersToAdd, remove: ['content-length'] };
    }
    return { body: 'BUFFERED', set: this.headersToAdd, remove: [] };
  }

  async body(chunk: Buffer, endOfStream: boolean): Promise<AnswerStep> {
    try {
      return this.guard ? await this.streamed(this.guard, chunk, endOfStream) : await this.buffered(chunk);
    } catch (error) {
      this.logger.error({ decision_id: this.context.decisionId, cause: describeCause(error) }, 'the answer could not be checked; it is blocked');
      this.reasons.add('internal_error');
      this.blocked = true;
      void this.finish('failed', undefined);
      const body = JSON.stringify({ error: { code: 'internal_error', message: 'the answer could not be checked' } });
      return { kind: 'blocked', reasons: ['internal_error'], immediate: { status: 502, headers: [{ key: 'content-type', value: 'application/json' }], body } };
    }
  }

  abort(): void {
    if (this.done) return;
    void this.finish(this.guard ? 'counted' : 'none', this.guard?.usage().usage, this.blocked ? 'blocked' : 'aborted');
  }

  private model(): string | null {
    const llm = this.context.input.llm as { model?: unknown } | undefined;
    return typeof llm?.model === 'string' ? llm.model : null;
  }

  private async buffered(chunk: Buffer): Promise<AnswerStep> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(chunk.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (this.status >= 400 || parsed === undefined) {
      // An error answer carries no model output; an unparseable one cannot be judged, so it is
      // scanned as text like any other body.
      if (parsed === undefined) {
        const facts = contentFacts(undefined, chunk, false, this.content);
        this.findings = facts.findings;
        const verdict = this.judge(facts);
        if (!verdict.allowed) return this.block(verdict, undefined);
      }
      await this.finish(this.status >= 400 ? 'error_response' : 'none', undefined);
      return { kind: 'pass' };
    }
    const api = this.api === 'openai.embeddings' || this.api === undefined ? 'openai.chat' : this.api;
    const facts = bufferedResponseFacts(api, parsed);
    const scanned = contentFacts(parsed, chunk, false, this.content);
    this.findings = scanned.findings;
    const verdict = this.judge(scanned);
    const usage = facts.usage ?? this.countedUsage(parsed);
    if (!verdict.allowed) return this.block(verdict, usage);
    let body: unknown = parsed;
    let removed: readonly string[] | undefined;
    if (verdict.redact !== undefined && scanned.findings.length > 0) {
      const masked = redactBody(body, verdict.redact === 'all' ? undefined : verdict.redact);
      body = masked.body;
      this.redactions = masked.redactions;
    }
    if (facts.mcp?.kind === 'tools/list' && facts.mcp.tools && facts.mcp.tools.length > 0) {
      const offered = this.responses.offeredTools(this.context, facts.mcp.tools);
      const filtered = removeTools(body, new Set(facts.mcp.tools.filter((name) => !offered.has(name))));
      body = filtered.body;
      removed = filtered.removed;
    }
    await this.finish(facts.usage ? 'provider_usage' : usage ? 'counted' : 'none', usage, undefined, removed);
    if (body === parsed) return { kind: 'pass' };
    const text = Buffer.from(JSON.stringify(body), 'utf8');
    return { kind: 'pass', body: text, set: [{ key: 'content-length', value: String(text.length) }] };
  }

  private async streamed(guard: StreamGuard, chunk: Buffer, endOfStream: boolean): Promise<AnswerStep> {
    const pushed = guard.push(chunk, endOfStream);
    if (this.blocked) {
      // Blocked: nothing more leaves, but the rest of the answer is read for its usage, so the
      // hold settles at what the provider bills, not at what the client saw.
      if (endOfStream) {
        const usage = guard.usage();
        await this.finish(usage.source === 'provider' ? 'provider_usage' : 'counted', usage.usage, 'blocked');
      }
      return { kind: 'pass', body: Buffer.alloc(0) };
    }
    let verdict: ResponseVerdict | undefined;
    if (pushed.newFindings.length > 0) {
      this.findings = mergeFindings(this.findings, pushed.newFindings);
      verdict = this.judge({ scanned: true, truncated: false, findings: this.findings });
      this.redact = verdict.allowed ? verdict.redact : undefined;
    }
    // MCP over an event stream: a tools/list answer is filtered like a buffered one.
    for (const message of pushed.mcpMessages) {
      const facts = mcpMessageFacts(message);
      if (facts.kind !== 'tools/list' || !facts.tools) continue;
      const offered = this.responses.offeredTools(this.context, facts.tools);
      for (const name of facts.tools) if (!offered.has(name)) this.toolsRemoved.add(name);
    }
    if (verdict && !verdict.allowed) {
      this.blocked = true;
      const body = guard.release({ block: true, reason: verdict.reasons[0] ?? 'response_blocked' });
      if (endOfStream) await this.finish('counted', guard.usage().usage, 'blocked');
      return { kind: 'blocked', reasons: verdict.reasons, body };
    }
    const body = guard.release({
      ...(this.redact !== undefined ? { redact: this.redact } : {}),
      ...(this.toolsRemoved.size > 0 ? { removeTools: this.toolsRemoved } : {}),
    });
    if (endOfStream) {
      const usage = guard.usage();
      await this.finish(usage.source === 'provider' ? 'provider_usage' : 'counted', usage.usage, undefined, [...this.toolsRemoved]);
    }
    return { kind: 'pass', body };
  }


  private judge(content: { scanned: boolean; truncated: boolean; findings: Finding[] }): ResponseVerdict {
    const verdict = this.responses.judge(this.context, { status: this.status, api: this.api ?? null, stream: this.stream, content });
    for (const reason of verdict.reasons) if (reason !== 'allowed') this.reasons.add(reason);
    return verdict;
  }

  private async block(verdict: ResponseVerdict, usage: ProviderUsage | undefined): Promise<AnswerStep> {
    this.blocked = true;
    await this.finish(usage ? 'provider_usage' : 'none', usage, 'blocked');
    return { kind: 'blocked', reasons: verdict.reasons, immediate: { status: verdict.httpStatus, headers: verdict.headers, body: verdict.body } };
  }

  /** Usage counted from a buffered answer without a usage block: the request's input estimate and the output members' tokens. */
  private countedUsage(parsed: unknown): ProviderUsage | undefined {
    const member = this.api ? OUTPUT_MEMBER[this.api] : undefined;
    if (member === undefined || typeof parsed !== 'object' || parsed === null) return undefined;
    const output = (parsed as Record<string, unknown>)[member];
    if (output === undefined) return undefined;
    return {
      input_tokens: this.estimatedInput(),
      // The member's JSON (an upper bound of its text: quotes and names count too).
      output_tokens: countTextTokens(JSON.stringify(output), encodingForModel(this.model())),
    };
  }

  private async finish(settlement: NonNullable<ResponseOutcome['settlement']>, usage: ProviderUsage | undefined, action?: ResponseOutcome['action'], toolsRemoved?: readonly string[]): Promise<void> {
    if (this.done) return;
    this.done = true;
    let settled: ResponseOutcome['settlement'] = settlement;
    if (settlement === 'error_response') {
      settled = (await this.responses.settle(this.context, { usage: { input_tokens: 0, output_tokens: 0 }, outcome: 'failed', upstreamStatus: this.status })) ? 'error_response' : 'none';
    } else if (usage !== undefined) {
      const withInput = usage.input_tokens === undefined && usage.prompt_tokens === undefined ? { ...usage, input_tokens: this.estimatedInput() } : usage;
      settled = (await this.responses.settle(this.context, { usage: withInput as Record<string, unknown>, outcome: 'completed', upstreamStatus: this.status })) ? settlement : 'none';
    } else {
      settled = 'none';
    }
    this.responses.record(this.context, {
      status: this.status,
      api: this.api ?? null,
      stream: this.stream,
      action: action ?? (toolsRemoved && toolsRemoved.length > 0 ? 'filtered' : this.redactions > 0 || (this.stream && this.redact !== undefined) ? 'redacted' : 'passed'),
      reasons: [...this.reasons],
      findings: this.findings,
      ...(this.redactions > 0 ? { redactions: this.redactions } : {}),
      ...(toolsRemoved && toolsRemoved.length > 0 ? { toolsRemoved } : {}),
      settlement: settled,
    });
  }

  /** Input tokens when the answer did not say: the request's own count (input.llm.input_tokens). */
  private estimatedInput(): number {
    const llm = this.context.input.llm as { input_tokens?: unknown } | undefined;
    return typeof llm?.input_tokens === 'number' ? llm.input_tokens : 0;
  }
}

/** Findings so far plus new ones, counts added per (type, path). */
function mergeFindings(earlier: readonly Finding[], added: readonly Finding[]): Finding[] {
  const merged = new Map<string, Finding>();
  for (const finding of [...earlier, ...added]) {
    const key = `${finding.type}\u0000${finding.path}`;
    const seen = merged.get(key);
    merged.set(key, seen ? { ...seen, count: seen.count + finding.count } : { ...finding });
  }
  return [...merged.values()];
}
