/**
 * `input.content`: what the detectors found in the body a model or tool will see, for the policy
 * to allow, deny or redact. Types, paths and counts only; never a value.
 */
import type { FindingType } from './detectors.js';
import { redactBody, redactText } from './redact.js';
import { scanBody, type Finding } from './scan.js';

/** The `content` config section, as the decision pipeline passes it to {@link contentFacts}. */
export interface ContentOptions {
  readonly enabled: boolean;
  readonly maxStringBytes: number;
  readonly maxDepth: number;
}

/** What the policy sees as `input.content`; the audit trail may keep it too, since it holds no value. */
export interface ContentFacts {
  /** False when scanning is switched off, or the body arrived cut short. */
  readonly scanned: boolean;
  /** True when the body arrived cut short, or a string in it was too long to scan in full. */
  readonly truncated: boolean;
  readonly findings: Finding[];
  /** UTF-8 bytes the detectors ran on. */
  readonly scanned_bytes: number;
}

/** What to scan: the parsed body when the gateway's content type was understood, else the text. */
function scannable(parsedBody: unknown, rawBody: Buffer): unknown {
  if (parsedBody !== null && parsedBody !== undefined) return parsedBody;
  return rawBody.length === 0 ? undefined : rawBody.toString('utf8');
}

/**
 * Scans the body. `truncatedBody` is the gateway's word that the body is partial (content-length
 * larger than what arrived, Envoy's partial-body header); such a body is not scanned at all,
 * because what is missing may be exactly what matters.
 */
export function contentFacts(parsedBody: unknown, rawBody: Buffer, truncatedBody: boolean, options: ContentOptions): ContentFacts {
  if (truncatedBody) return { scanned: false, truncated: true, findings: [], scanned_bytes: 0 };
  if (!options.enabled) return { scanned: false, truncated: false, findings: [], scanned_bytes: 0 };
  const target = scannable(parsedBody, rawBody);
  if (target === undefined) return { scanned: true, truncated: false, findings: [], scanned_bytes: 0 };
  const result = scanBody(target, { maxStringBytes: options.maxStringBytes, maxDepth: options.maxDepth });
  return { scanned: true, truncated: result.truncated, findings: result.findings, scanned_bytes: result.scannedBytes };
}

/** How a body can be rewritten: JSON re-serialised, text as text; form and multipart bodies cannot. */
export function rewritableAs(contentType: string | undefined, parsedBody: unknown): 'json' | 'text' | undefined {
  const type = (contentType ?? '').toLowerCase();
  if (type.includes('application/json')) return 'json';
  if ((parsedBody === null || parsedBody === undefined) && (type === '' || type.startsWith('text/'))) return 'text';
  return undefined;
}

/**
 * The body with the given finding types masked, or undefined when there was nothing to mask:
 * for JSON the masked document (the caller serialises it once, after any other rewrite), for
 * text the masked text. Tool-call arguments and other JSON held in strings stay valid JSON
 * strings (see redact.ts).
 */
export function maskedBody(kind: 'json' | 'text', parsedBody: unknown, rawBody: Buffer, types: ReadonlySet<FindingType> | undefined): unknown {
  if (kind === 'json') {
    const { body, redactions } = redactBody(parsedBody, types);
    return redactions === 0 ? undefined : body;
  }
  const { text, redactions } = redactText(rawBody.toString('utf8'), types);
  return redactions === 0 ? undefined : text;
}
