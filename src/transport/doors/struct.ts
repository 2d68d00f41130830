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

export interface Struct {
  fields?: Record<string, StructValue>;
}

export function toStructValue(value: unknown): StructValue {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toStructValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value as Record<string, unknown>) };
  return { stringValue: String(value) };
}

export function toStruct(object: Readonly<Record<string, unknown>>): Struct {
  const fields: Record<string, StructValue> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toStructValue(value);
  return { fields };
}

export function fromStructValue(value: StructValue | undefined): unknown {
  if (!value) return null;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return fromStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(fromStructValue);
  return null;
}

export function fromStruct(struct: Struct | undefined): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) object[key] = fromStructValue(value);
  return object;
}
