/**
 * The policy input's shape, defined once in schema/input.schema.json (documented in README,
 * "The policy input"). The service does not validate inputs per request (it builds them); the
 * tests validate every input the pipeline builds against it, so a key added in code without
 * documenting it fails. (Hand-written inputs in decision tables are not checked against it: they
 * are usually partial on purpose.)
 */
import { Ajv } from 'ajv';
import inputSchema from './schema/input.schema.json' with { type: 'json' };
import resultSchema from './schema/result.schema.json' with { type: 'json' };

/** The JSON Schema of `input`, for tools that want the document itself. */
export const INPUT_SCHEMA: Readonly<Record<string, unknown>> = inputSchema;

// Finding types are defined once, in the result schema, and referenced from the input schema.
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
ajv.addSchema(resultSchema);
const validate = ajv.compile(inputSchema);

/**
 * Checks a document against the input schema; returns the problems (empty when it conforms),
 * each as `<JSON pointer> <message>`. It validates the document as the policy receives it, that
 * is after JSON serialisation: pass `JSON.parse(JSON.stringify(input))` when the object may hold
 * `undefined` members.
 */
export function validateInput(document: unknown): string[] {
  if (validate(document)) return [];
  return (validate.errors ?? []).map((error) => {
    const where = error.instancePath || '(input)';
    const extra = error.keyword === 'additionalProperties' ? ` (${String((error.params as { additionalProperty?: unknown }).additionalProperty)})` : '';
    return `${where} ${error.message ?? 'is invalid'}${extra}`;
  });
}
