/**
 * What the detectors find: the closed list of finding types and the match they report.
 */

/** Every finding type, in a stable order (tables, tests and policies iterate it). */
export const FINDING_TYPES = [
  'email',
  'phone',
  'us_ssn',
  'payment_card',
  'iban',
  'secret.aws_access_key',
  'secret.aws_secret_key',
  'secret.private_key',
  'secret.github_token',
  'secret.gitlab_token',
  'secret.openai_key',
  'secret.anthropic_key',
  'secret.slack_token',
  'secret.slack_webhook',
  'secret.stripe_key',
  'secret.google_api_key',
  'secret.jwt',
  'secret.npm_token',
  'secret.azure_storage_key',
  'secret.huggingface_token',
  'secret.sendgrid_key',
  'secret.pypi_token',
  'secret.digitalocean_token',
  'secret.shopify_token',
] as const;

/** One finding type, as the detectors report it and the policy reads it in `input.content.findings[].type`. */
export type FindingType = (typeof FINDING_TYPES)[number];

const FINDING_TYPE_SET: ReadonlySet<string> = new Set(FINDING_TYPES);

/** True when `value` is one of {@link FINDING_TYPES} (corpus labels, policy input). */
export function isFindingType(value: unknown): value is FindingType {
  return typeof value === 'string' && FINDING_TYPE_SET.has(value);
}

/** One match: its type and where it is. Never the value. */
export interface Match {
  readonly type: FindingType;
  /** UTF-16 offset of the first character. */
  readonly start: number;
  /** UTF-16 offset just past the last character. */
  readonly end: number;
}
