/**
 * Envoy's CheckResponse written straight to protobuf bytes, the way protobufjs writes it (fields
 * in number order, every field the object holds, empty repeated fields left out), so the bytes
 * are the same. It exists because it runs once per Check: protobufjs copies the object into
 * message instances, then queues one operation object per field before it writes, about 10 KB of
 * garbage and several µs per answer; this measures the message once and writes it into one
 * buffer. It covers exactly the shape {@link toCheckResponse} builds (envoy-grpc.ts), and a test
 * holds it byte for byte to protobufjs over generated responses.
 */
import type { Struct, StructValue } from './struct.js';

/** config.core.v3.HeaderValueOption, as toCheckResponse builds it. */
export interface HeaderOptionMessage {
  readonly header: { readonly key: string; readonly value: string };
  readonly appendAction: 'APPEND_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS_OR_ADD';
}

/** service.auth.v3.CheckResponse, as toCheckResponse builds it. */
export interface CheckResponseMessage {
  readonly status: { readonly code: number };
  readonly okResponse?: {
    readonly headers: readonly HeaderOptionMessage[];
    readonly headersToRemove: readonly string[];
    readonly responseHeadersToAdd: readonly HeaderOptionMessage[];
    readonly queryParametersToSet: readonly { readonly key: string; readonly value: string }[];
    readonly queryParametersToRemove: readonly string[];
  };
  readonly deniedResponse?: {
    readonly status: { readonly code: number };
    readonly headers: readonly HeaderOptionMessage[];
    readonly body: string;
  };
  readonly dynamicMetadata: Struct;
}

const APPEND_ACTIONS = { APPEND_IF_EXISTS_OR_ADD: 0, OVERWRITE_IF_EXISTS_OR_ADD: 2 } as const;

// Wire types: 0 varint, 1 fixed64, 2 length-delimited.
const tag = (field: number, wireType: number): number => (field << 3) | wireType;

function varintSize(value: number): number {
  // int32 fields take ten bytes when negative, as protobufjs writes them.
  if (value < 0) return 10;
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** The size of a length-delimited field holding `length` bytes (its one-byte tag included). */
const delimited = (length: number): number => 1 + varintSize(length) + length;

function stringField(value: string): number {
  return delimited(Buffer.byteLength(value));
}

function headerOptionSize(option: HeaderOptionMessage): number {
  const header = stringField(option.header.key) + stringField(option.header.value);
  return delimited(header) + 1 + varintSize(APPEND_ACTIONS[option.appendAction]);
}

function valueSize(value: StructValue): number {
  if (value.nullValue !== undefined) return 2;
  if (value.numberValue !== undefined) return 9;
  if (value.stringValue !== undefined) return stringField(value.stringValue);
  if (value.boolValue !== undefined) return 2;
  if (value.structValue !== undefined) return delimited(structSize(value.structValue));
  if (value.listValue !== undefined) return delimited(listSize(value.listValue.values ?? []));
  return 0;
}

function listSize(values: readonly StructValue[]): number {
  let size = 0;
  for (const value of values) size += delimited(valueSize(value));
  return size;
}

function structSize(struct: Struct): number {
  let size = 0;
  for (const key in struct.fields) size += delimited(stringField(key) + delimited(valueSize(struct.fields[key] as StructValue)));
  return size;
}

function repeatedSize<T>(items: readonly T[], size: (item: T) => number): number {
  let total = 0;
  for (const item of items) total += delimited(size(item));
  return total;
}

function okSize(ok: NonNullable<CheckResponseMessage['okResponse']>): number {
  return (
    repeatedSize(ok.headers, headerOptionSize) +
    repeatedSize(ok.headersToRemove, Buffer.byteLength) +
    repeatedSize(ok.responseHeadersToAdd, headerOptionSize) +
    repeatedSize(ok.queryParametersToSet, (q) => stringField(q.key) + stringField(q.value)) +
    repeatedSize(ok.queryParametersToRemove, Buffer.byteLength)
  );
}

function deniedSize(denied: NonNullable<CheckResponseMessage['deniedResponse']>): number {
  return delimited(1 + varintSize(denied.status.code)) + repeatedSize(denied.headers, headerOptionSize) + stringField(denied.body);
}

/** Writes into one buffer, front to back. */
class Writer {
  offset = 0;
  constructor(readonly buffer: Buffer) {}

  varint(value: number): void {
    if (value < 0) {
      // Two's complement over 64 bits, as protobufjs writes a negative int32.
      let low = value >>> 0;
      let high = -1 >>> 0;
      for (let i = 0; i < 9; i++) {
        this.buffer[this.offset++] = (low & 0x7f) | 0x80;
        low = ((low >>> 7) | (high << 25)) >>> 0;
        high >>>= 7;
      }
      this.buffer[this.offset++] = low & 0x01;
      return;
    }
    while (value >= 0x80) {
      this.buffer[this.offset++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buffer[this.offset++] = value;
  }

  string(field: number, value: string): void {
    this.varint(tag(field, 2));
    this.varint(Buffer.byteLength(value));
    this.offset += this.buffer.write(value, this.offset, 'utf8');
  }

  begin(field: number, length: number): void {
    this.varint(tag(field, 2));
    this.varint(length);
  }

  headerOption(field: number, option: HeaderOptionMessage): void {
    this.begin(field, headerOptionSize(option));
    this.begin(1, stringField(option.header.key) + stringField(option.header.value));
    this.string(1, option.header.key);
    this.string(2, option.header.value);
    this.varint(tag(3, 0));
    this.varint(APPEND_ACTIONS[option.appendAction]);
  }

  value(value: StructValue): void {
    if (value.nullValue !== undefined) {
      this.varint(tag(1, 0));
      this.varint(0);
    } else if (value.numberValue !== undefined) {
      this.varint(tag(2, 1));
      this.buffer.writeDoubleLE(value.numberValue, this.offset);
      this.offset += 8;
    } else if (value.stringValue !== undefined) {
      this.string(3, value.stringValue);
    } else if (value.boolValue !== undefined) {
      this.varint(tag(4, 0));
      this.varint(value.boolValue ? 1 : 0);
    } else if (value.structValue !== undefined) {
      this.begin(5, structSize(value.structValue));
      this.struct(value.structValue);
    } else if (value.listValue !== undefined) {
      const values = value.listValue.values ?? [];
      this.begin(6, listSize(values));
      for (const item of values) {
        this.begin(1, valueSize(item));
        this.value(item);
      }
    }
  }

  struct(struct: Struct): void {
    for (const key in struct.fields) {
      const value = struct.fields[key] as StructValue;
      const valueLength = valueSize(value);
      this.begin(1, stringField(key) + delimited(valueLength));
      this.string(1, key);
      this.begin(2, valueLength);
      this.value(value);
    }
  }
}

/** The protobuf bytes of `message`: the same bytes protobufjs writes for it. */
export function encodeCheckResponse(message: CheckResponseMessage): Buffer {
  const statusSize = 1 + varintSize(message.status.code);
  const ok = message.okResponse;
  const denied = message.deniedResponse;
  const okLength = ok ? okSize(ok) : 0;
  const deniedLength = denied ? deniedSize(denied) : 0;
  const metadataLength = structSize(message.dynamicMetadata);
  const total = delimited(statusSize) + (denied ? delimited(deniedLength) : 0) + (ok ? delimited(okLength) : 0) + delimited(metadataLength);
  const w = new Writer(Buffer.allocUnsafe(total));
  w.begin(1, statusSize);
  w.varint(tag(1, 0));
  w.varint(message.status.code);
  if (denied) {
    w.begin(2, deniedLength);
    w.begin(1, 1 + varintSize(denied.status.code));
    w.varint(tag(1, 0));
    w.varint(denied.status.code);
    for (const option of denied.headers) w.headerOption(2, option);
    w.string(3, denied.body);
  }
  if (ok) {
    w.begin(3, okLength);
    for (const option of ok.headers) w.headerOption(2, option);
    for (const name of ok.headersToRemove) w.string(5, name);
    for (const option of ok.responseHeadersToAdd) w.headerOption(6, option);
    for (const parameter of ok.queryParametersToSet) {
      w.begin(7, stringField(parameter.key) + stringField(parameter.value));
      w.string(1, parameter.key);
      w.string(2, parameter.value);
    }
    for (const name of ok.queryParametersToRemove) w.string(8, name);
  }
  w.begin(4, metadataLength);
  w.struct(message.dynamicMetadata);
  if (w.offset !== total) throw new Error(`CheckResponse encoding wrote ${w.offset} of ${total} bytes`);
  return w.buffer;
}
