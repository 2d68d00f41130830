/**
 * What one streamed event of each provider carries: the output text it adds (content, refusals,
 * tool-call arguments, reasoning), which outputs it ends, the usage it reports and the model.
 *
 * Text is placed on a channel named by the JSON path the same text has in the provider's
 * non-streamed response (`$.choices[0].message.content`, `$.output[1].arguments`,
 * `$.content[0].text`), so findings in a stream and in a buffered response read alike.
 * Channels of one group follow each other (an Anthropic message's blocks, a choice's content then
 * its tool calls): text on a new channel ends the others of its group.
 */
import { isJsonObject } from '../../core/json-object.js';
import type { ResponseApi } from './buffered.js';
import type { SseEvent } from './sse.js';
import { providerUsage, type ProviderUsage } from './usage.js';

/** A path inside an event's parsed data: member names and array positions. */
export type DataPath = readonly (string | number)[];

/** One piece of output text in an event. */
export interface TextPiece {
  /** The output it belongs to, as the JSON path of that output in a buffered response. */
  readonly channel: string;
  /** Channels of one group are written one after another. */
  readonly group: string;
  /** Where the text sits in the event's data, to write it back masked. */
  readonly at: DataPath;
  /** Token log-probabilities that repeat the text; removed when the text is masked. */
  readonly logprobsAt?: DataPath;
  readonly text: string;
}

/** What {@link readStreamEvent} finds in one event. */
export interface StreamEventFacts {
  /** The parsed data; undefined when it is not JSON (`[DONE]`, none). */
  readonly json: unknown;
  readonly pieces: readonly TextPiece[];
  /** Groups whose outputs are complete after this event. */
  readonly closesGroups: readonly string[];
  /** The response is complete (every output ends). */
  readonly closesAll: boolean;
  /** Usage reported by this event (to merge with earlier reports). */
  readonly usage: ProviderUsage | undefined;
  /** True when this event's usage is the response's final one. */
  readonly usageFinal: boolean;
  readonly model: string | undefined;
}

const NOTHING: Omit<StreamEventFacts, 'json'> = { pieces: [], closesGroups: [], closesAll: false, usage: undefined, usageFinal: false, model: undefined };

function parseData(data: string | undefined): unknown {
  if (data === undefined) return undefined;
  const first = data.trimStart()[0];
  if (first !== '{' && first !== '[') return undefined;
  try {
    return JSON.parse(data) as unknown;
  } catch {
    return undefined;
  }
}

function modelOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function chatEvent(json: Record<string, unknown>): Omit<StreamEventFacts, 'json'> {
  const pieces: TextPiece[] = [];
  const closesGroups: string[] = [];
  const choices = Array.isArray(json.choices) ? json.choices : [];
  choices.forEach((choice: unknown, k) => {
    if (!isJsonObject(choice)) return;
    const n = typeof choice.index === 'number' ? choice.index : k;
    const group = `choice:${n}`;
    const delta = choice.delta;
    const logprobsAt: DataPath = ['choices', k, 'logprobs'];
    if (isJsonObject(delta)) {
      for (const member of ['content', 'refusal'] as const) {
        const text = delta[member];
        if (typeof text === 'string' && text !== '') {
          pieces.push({ channel: `$.choices[${n}].message.${member}`, group, at: ['choices', k, 'delta', member], logprobsAt, text });
        }
      }
      if (Array.isArray(delta.tool_calls)) {
        delta.tool_calls.forEach((call: unknown, j) => {
          if (!isJsonObject(call) || !isJsonObject(call.function) || typeof call.function.arguments !== 'string' || call.function.arguments === '') return;
          const t = typeof call.index === 'number' ? call.index : j;
          pieces.push({
            channel: `$.choices[${n}].message.tool_calls[${t}].function.arguments`,
            group,
            at: ['choices', k, 'delta', 'tool_calls', j, 'function', 'arguments'],
            text: call.function.arguments,
          });
        });
      }
      const legacy = delta.function_call;
      if (isJsonObject(legacy) && typeof legacy.arguments === 'string' && legacy.arguments !== '') {
        pieces.push({ channel: `$.choices[${n}].message.function_call.arguments`, group, at: ['choices', k, 'delta', 'function_call', 'arguments'], text: legacy.arguments });
      }
    }
    if (typeof choice.finish_reason === 'string') closesGroups.push(group);
  });
  const usage = providerUsage(json.usage);
  return { pieces, closesGroups, closesAll: false, usage, usageFinal: usage !== undefined, model: modelOf(json.model) };
}

/** Responses API delta events whose `delta` is text, and the member the text has in the output item. */
const RESPONSES_DELTAS: Readonly<Record<string, (e: Record<string, unknown>) => string>> = {
  'response.output_text.delta': (e) => `.content[${String(e.content_index ?? 0)}].text`,
  'response.refusal.delta': (e) => `.content[${String(e.content_index ?? 0)}].refusal`,
  'response.function_call_arguments.delta': () => '.arguments',
  'response.custom_tool_call_input.delta': () => '.input',
  'response.mcp_call_arguments.delta': () => '.arguments',
  'response.reasoning_summary_text.delta': (e) => `.summary[${String(e.summary_index ?? 0)}].text`,
  'response.reasoning_text.delta': (e) => `.content[${String(e.content_index ?? 0)}].text`,
  'response.audio.transcript.delta': () => '.transcript',
  'response.code_interpreter_call_code.delta': () => '.code',
};

const RESPONSES_FINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

function responsesEvent(json: Record<string, unknown>): Omit<StreamEventFacts, 'json'> {
  const type = typeof json.type === 'string' ? json.type : '';
  const member = RESPONSES_DELTAS[type];
  if (member !== undefined) {
    if (typeof json.delta !== 'string' || json.delta === '') return NOTHING;
    const channel = `$.output[${String(json.output_index ?? 0)}]${member(json)}`;
    return { ...NOTHING, pieces: [{ channel, group: 'output', at: ['delta'], logprobsAt: ['logprobs'], text: json.delta }] };
  }
  const response = isJsonObject(json.response) ? json.response : undefined;
  const model = modelOf(response?.model);
  if (RESPONSES_FINAL.has(type)) {
    const usage = providerUsage(response?.usage);
    return { ...NOTHING, closesAll: true, usage, usageFinal: usage !== undefined, model };
  }
  // `….done` events repeat a finished part in full: the outputs before it are complete.
  return { ...NOTHING, closesGroups: type.endsWith('.done') ? ['output'] : [], model };
}

function anthropicEvent(json: Record<string, unknown>): Omit<StreamEventFacts, 'json'> {
  switch (json.type) {
    case 'message_start': {
      const message = isJsonObject(json.message) ? json.message : {};
      return { ...NOTHING, usage: providerUsage(message.usage), model: modelOf(message.model) };
    }
    case 'content_block_start': {
      const block = json.content_block;
      const index = String(json.index ?? 0);
      if (isJsonObject(block) && typeof block.text === 'string' && block.text !== '') {
        return { ...NOTHING, pieces: [{ channel: `$.content[${index}].text`, group: 'content', at: ['content_block', 'text'], text: block.text }] };
      }
      return NOTHING;
    }
    case 'content_block_delta': {
      const delta = json.delta;
      if (!isJsonObject(delta)) return NOTHING;
      const index = String(json.index ?? 0);
      const piece = (member: string, channelMember: string): Omit<StreamEventFacts, 'json'> => {
        const text = delta[member];
        if (typeof text !== 'string' || text === '') return NOTHING;
        return { ...NOTHING, pieces: [{ channel: `$.content[${index}].${channelMember}`, group: 'content', at: ['delta', member], text }] };
      };
      if (delta.type === 'text_delta') return piece('text', 'text');
      if (delta.type === 'input_json_delta') return piece('partial_json', 'input');
      if (delta.type === 'thinking_delta') return piece('thinking', 'thinking');
      return NOTHING;
    }
    case 'content_block_stop':
      return { ...NOTHING, closesGroups: ['content'] };
    case 'message_delta': {
      const usage = providerUsage(json.usage);
      return { ...NOTHING, usage, usageFinal: usage !== undefined };
    }
    case 'message_stop':
      return { ...NOTHING, closesAll: true };
    default:
      return NOTHING;
  }
}

/**
 * The facts of one event of a `api` stream. MCP events (JSON-RPC messages over Streamable HTTP)
 * carry no text pieces: a message is inspected whole, like a buffered body.
 */
export function readStreamEvent(api: ResponseApi, event: SseEvent): StreamEventFacts {
  if (event.data === '[DONE]') return { json: undefined, ...NOTHING, closesAll: true };
  const json = parseData(event.data);
  if (!isJsonObject(json) || api === 'mcp') return { json, ...NOTHING };
  switch (api) {
    case 'openai.chat':
      return { json, ...chatEvent(json) };
    case 'openai.responses':
      return { json, ...responsesEvent(json) };
    case 'anthropic.messages':
      return { json, ...anthropicEvent(json) };
  }
}

