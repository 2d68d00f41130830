/**
 * Reading what the response side of a request left behind on a running Signalbox: the budget
 * (held and spent, through /v1/spend), the audit trail's decision, settlement and `response`
 * records, and the cost a usage block should settle at (PriceTable.default()).
 */
import { readFile } from 'node:fs/promises';
import { PriceTable } from '../../src/inspect/prices.js';
import { ADMIN_HEADERS, type TestSignalbox } from './signalbox.js';

/** One user's day budget as /v1/spend reports it. */
export interface Spend {
  spent_usd: number;
  held_usd: number;
  holds: number;
}

/** The day budget of `user:<subject>` now. */
export async function spendOf(sb: TestSignalbox, subject: string): Promise<Spend> {
  const res = await fetch(`http://127.0.0.1:${sb.running.httpPort}/v1/spend?scope=user:${subject}&window=day`, { headers: ADMIN_HEADERS });
  const body = (await res.json()) as { budgets: Spend[] };
  return body.budgets[0] ?? { spent_usd: 0, held_usd: 0, holds: 0 };
}

/** The day budget once the answer's settlement landed (it is written after the last byte left), or as it stands after 5 s. */
export async function settledSpendOf(sb: TestSignalbox, subject: string): Promise<Spend> {
  let current = await spendOf(sb, subject);
  for (let i = 0; i < 50 && current.holds > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    current = await spendOf(sb, subject);
  }
  return current;
}

const prices = PriceTable.default();

/** What `usage` of `model` costs by the default price table, in dollars (micro-dollar exact). */
export function usdOf(model: string, usage: { input_tokens: number; output_tokens: number }): number {
  const micro = prices.costMicroUsd(model, { ...usage, cached_input_tokens: 0 });
  if (micro === undefined) throw new Error(`${model} has no price`);
  return Number(micro) / 1e6;
}

/** Every record of the audit trail so far. */
export async function auditRecords(sb: TestSignalbox): Promise<Array<Record<string, unknown>>> {
  await sb.running.audit.flush();
  return (await readFile(sb.auditPath, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The first audit record matching `match` once it was written (the trail is appended in the background); throws after 5 s. */
export async function awaitRecord(sb: TestSignalbox, what: string, match: (record: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    const found = (await auditRecords(sb)).find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no audit record: ${what}`);
}

/** The `type: "response"` record of a decision's answer. */
export function responseRecord(sb: TestSignalbox, decisionId: string): Promise<Record<string, unknown>> {
  return awaitRecord(sb, `response of ${decisionId}`, (r) => r.type === 'response' && r.decision_id === decisionId);
}

/** The decision record itself (the masked input, the result, the enforcement). */
export function decisionRecord(sb: TestSignalbox, decisionId: string): Promise<Record<string, unknown>> {
  return awaitRecord(sb, `decision ${decisionId}`, (r) => r.type === undefined && r.decision_id === decisionId);
}

/**
 * The text an event stream's data events carried, in the order they came: OpenAI chat
 * `choices[].delta.content` and Anthropic `content_block_delta` `delta.text`. Works on any run of
 * whole events (one chunk a client received, or the whole body).
 */
export function streamedText(body: string): string {
  let text = '';
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const event = JSON.parse(line.slice(6)) as { choices?: Array<{ delta?: { content?: string } }>; delta?: { text?: string } };
    for (const choice of event.choices ?? []) text += choice.delta?.content ?? '';
    text += event.delta?.text ?? '';
  }
  return text;
}
