import { ERROR_CODES } from '../../src/core/codes.js';

const KNOWN = new Set<string>(ERROR_CODES);

/**
 * Throws when a response body carries an error code in Signalbox's own namespace (snake_case,
 * no dot) that the catalogue (src/core/codes.ts) lacks. Dotted codes (`identity.token_missing`,
 * `model.not_allowed`) are a policy's own and are not checked. The test helpers that send
 * requests call it on every answer, so any test that meets such a response fails.
 */
export function assertCataloguedBody(body: string | undefined, where: string): void {
  if (!body) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return; // not JSON: a policy's own body
  }
  const code = (parsed as { error?: { code?: unknown } } | null)?.error?.code;
  if (typeof code !== 'string' || code.includes('.')) return;
  if (!KNOWN.has(code)) throw new Error(`${where}: the response carries error code "${code}", which the catalogue (src/core/codes.ts) lacks`);
}
