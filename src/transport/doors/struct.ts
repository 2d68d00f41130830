/**
 * google.protobuf.Struct ↔ JSON, in the object form @grpc/proto-loader uses (camelCase keys).
 */
export interface StructValue {
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: { values?: StructValue[] };
}

/** google.protobuf.Struct as proto-loader decodes it; `fields` may be absent for an empty Struct. */
export interface Struct {
  fields?: Record<string, StructValue>;
}

/**
 * Any JSON value as a Struct value; `undefined` becomes null, and anything not JSON (a bigint) is
 * sent as its string.
 */
export function toStructValue(value: unknown): StructValue {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toStructValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value as Record<string, unknown>) };
  return { stringValue: String(value) };
}

/** A JSON object as a Struct, for `dynamic_metadata` and other free-form fields on the wire. */
export function toStruct(object: Readonly<Record<string, unknown>>): Struct {
  const fields: Record<string, StructValue> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toStructValue(value);
  return { fields };
}

/** A Struct value as plain JSON; a value with no kind set reads as null. */
export function fromStructValue(value: StructValue | undefined): unknown {
  if (!value) return null;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return fromStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(fromStructValue);
  return null;
}

/**
 * A Struct as a plain JSON object, as opa-envoy-plugin presents Envoy's Structs to policies; a
 * missing Struct is `{}`.
 */
export function fromStruct(struct: Struct | undefined): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) object[key] = fromStructValue(value);
  return object;
}
