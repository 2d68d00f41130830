/**
 * The counting rules every API shares: the tokens of text, JSON, message framing and content
 * parts (text, images, audio, files, documents, tool use and results) of all three APIs.
 */
import { type Json } from './api.js';
import { countTextTokens, type EncodingName } from './tokenizer.js';
import { isJsonObject } from '../../core/json-object.js';

/**
 * OpenAI's published chat overhead (openai-cookbook "How to count tokens with tiktoken"): every
 * message is wrapped in 3 tokens (`<|start|>`, `<|message|>`/separator, `<|end|>`) plus its role,
 * a `name` costs 1 more, and every reply is primed with 3 (`<|start|>assistant<|message|>`). The
 * same framing is applied to Responses items and Anthropic messages, whose formats are not
 * published; it errs on the side of counting a few tokens too many.
 */
const MESSAGE_OVERHEAD = 3;
const NAME_OVERHEAD = 1;
/** Tokens that prime the reply (`<|start|>assistant<|message|>`), once per request. */
export const REPLY_PRIMING = 3;

/**
 * Fixed, conservative estimates for parts whose size cannot be read from the body. An image:
 * 1600 covers OpenAI's high-detail tile formula at its largest for gpt-4o / gpt-4.1 / gpt-5
 * (85 + 170 × 8 tiles = 1445) and Claude's resize cap (~1.15 MP ≈ 1600 tokens). It undercounts
 * models that bill image patches with a multiplier (gpt-4.1-mini/-nano, o4-mini) and gpt-4o-mini,
 * which bills images at ~33× the tokens (the same USD as gpt-4o).
 */
export const IMAGE_PART_TOKENS = 1600;
/** An audio part: ~3 minutes at OpenAI's ~10 audio tokens per second. Audio tokens are billed at
 * audio rates, several times the text price this table holds, so the USD estimate is low. */
export const AUDIO_PART_TOKENS = 2000;
/** A file or document part (PDF, …) given by reference or as base64: a few pages of text + page images. */
export const FILE_PART_TOKENS = 5000;

/** Nesting we follow in content blocks (tool_result → document → content …). */
const MAX_DEPTH = 6;

/** A running input-token count in one encoding; the per-API counters feed it the parts of a body. */
export class Counter {
  total = 0;
  constructor(readonly encoding: EncodingName) {}

  text(value: unknown): void {
    if (typeof value === 'string') this.total += countTextTokens(value, this.encoding);
  }

  /** A JSON value as the provider sees it serialised (tool schemas, tool_use input). */
  json(value: unknown): void {
    if (value === undefined) return;
    if (typeof value === 'string') {
      this.text(value);
      return;
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      return;
    }
    this.text(text);
  }

  message(role: unknown, name?: unknown): void {
    this.total += MESSAGE_OVERHEAD;
    this.text(role);
    if (typeof name === 'string') {
      this.total += NAME_OVERHEAD;
      this.text(name);
    }
  }

  /** A content part or block of any of the three APIs. */
  part(part: unknown, depth: number): void {
    if (typeof part === 'string') {
      this.text(part);
      return;
    }
    if (!isJsonObject(part) || depth > MAX_DEPTH) return;
    switch (part.type) {
      case 'text':
      case 'input_text':
      case 'output_text':
        this.text(part.text);
        return;
      case 'refusal':
        this.text(part.refusal);
        return;
      case 'thinking':
        this.text(part.thinking);
        return;
      case 'image':
      case 'image_url':
      case 'input_image':
        this.total += IMAGE_PART_TOKENS;
        return;
      case 'input_audio':
      case 'audio':
        this.total += AUDIO_PART_TOKENS;
        return;
      case 'file':
      case 'input_file':
        this.total += FILE_PART_TOKENS;
        return;
      case 'document':
        this.document(part, depth);
        return;
      case 'tool_use':
      case 'server_tool_use':
        this.text(part.name);
        this.json(part.input);
        return;
      case 'tool_result':
      case 'search_result':
        this.text(part.title);
        this.content(part.content, depth + 1);
        return;
      case 'redacted_thinking':
        return;
      default:
        // Unknown part types: count whatever text they carry rather than nothing.
        this.text(part.text);
    }
  }

  /** Anthropic documents: plain text and content sources are counted, files are estimated. */
  document(part: Json, depth: number): void {
    const source = part.source;
    this.text(part.title);
    this.text(part.context);
    if (isJsonObject(source) && source.type === 'text') this.text(source.data);
    else if (isJsonObject(source) && source.type === 'content') this.content(source.content, depth + 1);
    else this.total += FILE_PART_TOKENS;
  }

  content(content: unknown, depth: number): void {
    if (typeof content === 'string') this.text(content);
    else if (Array.isArray(content)) for (const part of content) this.part(part, depth);
  }
}
