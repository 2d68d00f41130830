/**
 * The policy result's schema (schema/result.schema.json) compiled, and what a violation says: the
 * member that fails, never a string value of the result (it may hold secrets). Used when a
 * request's result is interpreted (result.ts) and when a bundle is loaded (engine.ts).
 */
import { Ajv } from 'ajv';
import resultSchema from './schema/result.schema.json' with { type: 'json' };

const ajv = new Ajv({ allErrors: false, strict: true });
const validateWhole = ajv.compile(resultSchema);

/** True when `value` is of the documented shape: a boolean, or the object form. */
export function isValidResult(value: unknown): boolean {
  return validateWhole(value);
}
/**
 * The object branch alone, to explain a failing object: the schema's oneOf reports its first
 * branch's error ("must be boolean") for any object that fails the second, which names nothing.
 */
const { oneOf: resultForms, $id: _resultId, ...resultShared } = resultSchema;
const validateObjectResult = ajv.compile({ ...resultShared, ...resultForms[1] });

/** Numbers (limits, statuses) may be named in a message; strings never are (they may hold secrets). */
function shown(value: unknown): string {
  return typeof value === 'number' ? ` (got ${value})` : '';
}

/** The value at a JSON pointer inside the result, to name a numeric value that broke a limit. */
function valueAt(result: unknown, pointer: string): unknown {
  let value = result;
  for (const part of pointer.split('/').slice(1)) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return value;
}

/**
 * Describes the first schema violation: the member that fails and why (with the value when it is
 * a number, such as a limit above its maximum), never a string value of the result.
 */
export function resultViolation(result: unknown): string | undefined {
  if (typeof result === 'boolean') return undefined;
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return '(result) must be a boolean or an object with a boolean "allowed"';
  if (validateObjectResult(result)) return undefined;
  const error = validateObjectResult.errors?.[0];
  if (!error) return 'result does not match the schema';
  const extra = error.keyword === 'additionalProperties' ? ` (${JSON.stringify((error.params as { additionalProperty: string }).additionalProperty)})` : shown(valueAt(result, error.instancePath));
  return `${error.instancePath || '(result)'} ${error.message ?? 'is invalid'}${extra}`;
}

/**
 * The violation when the result's first fault is a number out of its range (a budget, rate or
 * price beyond what the store counts exactly; see the schema's maxima): what a bundle's smoke
 * evaluation refuses at load time, rather than failing every request.
 */
export function limitViolation(result: unknown): string | undefined {
  if (result === null || typeof result !== 'object' || Array.isArray(result) || validateObjectResult(result)) return undefined;
  const keyword = validateObjectResult.errors?.[0]?.keyword;
  return keyword === 'maximum' || keyword === 'minimum' ? resultViolation(result) : undefined;
}

