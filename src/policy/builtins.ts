/**
 * Host builtins: the non-native OPA builtins Signalbox provides to policies compiled to WASM.
 *
 * opa-wasm calls these synchronously during evaluation with JSON-decoded arguments. Their
 * semantics follow OPA's topdown implementations. As in OPA with strict builtin errors off (the
 * default, and what opa-envoy-plugin runs), an error makes the call undefined rather than failing
 * the whole query; the error is recorded on the evaluation context for `signalbox eval`.
 */
import { decodeJws, decodeVerify, VERIFY_BUILTINS, verifyWithAlgorithm } from './jwt-builtins.js';
import { SDK_BUILTINS } from './sdk-builtins.js';

/** Per-evaluation state the builtins read: OPA fixes `time.now_ns()` for one whole query. */
export interface EvaluationContext {
  readonly nowNs: bigint;
  readonly builtinErrors: string[];
}

type HostBuiltin = (...args: unknown[]) => unknown;

const NS_PER_SECOND = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;

class BuiltinError extends Error {}

/**
 * Encodes an integer as raw JSON text. opa-wasm accepts an ArrayBuffer as already-serialised
 * JSON, which keeps nanosecond timestamps exact instead of rounding them through a double.
 */
function exactInteger(value: bigint): ArrayBuffer {
  const bytes = new TextEncoder().encode(value.toString());
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function requireString(value: unknown): string {
  if (typeof value !== 'string') throw new BuiltinError(`operand must be a string`);
  return value;
}

function requireInteger(value: unknown): bigint {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new BuiltinError(`operand must be a number`);
  return BigInt(Math.trunc(value));
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Parses an RFC 3339 timestamp to nanoseconds since the Unix epoch, exactly. */
export function parseRfc3339Ns(text: string): bigint {
  const m = RFC3339.exec(text);
  if (!m) throw new BuiltinError(`cannot parse "${text.slice(0, 64)}" as RFC 3339`);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) {
    throw new BuiltinError(`"${text.slice(0, 64)}" is out of range`);
  }
  const epochMs = Date.UTC(year, month - 1, day, hour, minute, second);
  let ns = BigInt(epochMs) * NS_PER_MS + BigInt((m[7] ?? '').padEnd(9, '0') || '0');
  if (m[9] !== undefined) {
    const offsetMinutes = Number(m[10]) * 60 + Number(m[11]);
    ns -= BigInt((m[9] === '-' ? -1 : 1) * offsetMinutes * 60) * NS_PER_SECOND;
  }
  return ns;
}

const DURATION_UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Parses a Go duration string ("1h30m", "-1.5s", "300ms") to nanoseconds. */
export function parseDurationNs(text: string): bigint {
  const m = /^([+-])?((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(text);
  if (text === '0') return 0n;
  if (!m) throw new BuiltinError(`invalid duration "${text.slice(0, 64)}"`);
  let total = 0;
  for (const part of text.replace(/^[+-]/, '').matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (DURATION_UNITS[part[2] as string] as number);
  }
  const ns = BigInt(Math.round(total));
  return m[1] === '-' ? -ns : ns;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

interface CivilTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: number;
}

const zoneFormatters = new Map<string, Intl.DateTimeFormat>();

function zoneFormatter(zone: string): Intl.DateTimeFormat {
  let formatter = zoneFormatters.get(zone);
  if (!formatter) {
    try {
      formatter = new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
        weekday: 'long',
      });
    } catch {
      throw new BuiltinError(`unknown time zone "${zone.slice(0, 64)}"`);
    }
    zoneFormatters.set(zone, formatter);
  }
  return formatter;
}

/** Reads OPA's time operand: a number of ns, or `[ns, "Zone"]` (""/"UTC" = UTC, "Local" = host zone). */
function civilTime(operand: unknown): CivilTime {
  let ns: bigint;
  let zone = 'UTC';
  if (Array.isArray(operand)) {
    if (operand.length !== 2) throw new BuiltinError(`operand must be a number or [ns, zone]`);
    ns = requireInteger(operand[0]);
    zone = requireString(operand[1]) || 'UTC';
  } else {
    ns = requireInteger(operand);
  }
  const ms = Number(ns / NS_PER_MS - (ns % NS_PER_MS < 0n ? 1n : 0n));
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw new BuiltinError(`time out of range`);
  if (zone === 'UTC') {
    return {
      year: date.getUTCFullYear(),
      month: date.getUTCMonth() + 1,
      day: date.getUTCDate(),
      hour: date.getUTCHours(),
      minute: date.getUTCMinutes(),
      second: date.getUTCSeconds(),
      weekday: date.getUTCDay(),
    };
  }
  const parts: Record<string, string> = {};
  const formatter = zone === 'Local' ? zoneFormatter(Intl.DateTimeFormat().resolvedOptions().timeZone) : zoneFormatter(zone);
  for (const part of formatter.formatToParts(date)) parts[part.type] = part.value;
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
    weekday: WEEKDAYS.indexOf(parts.weekday as (typeof WEEKDAYS)[number]),
  };
}

/** OPA's time.diff: calendar difference [y, m, d, h, min, s] between two instants, order-independent. */
function timeDiff(a: unknown, b: unknown): number[] {
  let t1 = civilTime(a);
  let t2 = civilTime(b);
  const key = (t: CivilTime): number[] => [t.year, t.month, t.day, t.hour, t.minute, t.second];
  const k1 = key(t1);
  const k2 = key(t2);
  const firstDiff = k1.findIndex((v, i) => v !== k2[i]);
  if (firstDiff >= 0 && (k1[firstDiff] as number) > (k2[firstDiff] as number)) [t1, t2] = [t2, t1];
  let years = t2.year - t1.year;
  let months = t2.month - t1.month;
  let days = t2.day - t1.day;
  let hours = t2.hour - t1.hour;
  let minutes = t2.minute - t1.minute;
  let seconds = t2.second - t1.second;
  if (seconds < 0) (seconds += 60), minutes--;
  if (minutes < 0) (minutes += 60), hours--;
  if (hours < 0) (hours += 24), days--;
  if (days < 0) {
    // Borrow the length of the month before t2's month, as Go's time arithmetic does.
    days += daysInMonth(t2.month === 1 ? t2.year - 1 : t2.year, t2.month === 1 ? 12 : t2.month - 1);
    months--;
  }
  if (months < 0) (months += 12), years--;
  return [years, months, days, hours, minutes, seconds];
}

/** OPA's io.jwt.decode: [header, payload, signature as hex]. Does not verify anything. */
function jwtDecode(token: unknown): unknown[] {
  const jws = decodeJws(token);
  return [jws.header, jws.payload, jws.signature.toString('hex')];
}

/** Implementations keyed by OPA builtin name, closed over the evaluation context accessor. */
export function createHostBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  const table: Record<string, HostBuiltin> = {
    'time.now_ns': () => exactInteger(context().nowNs),
    'time.parse_rfc3339_ns': (value) => exactInteger(parseRfc3339Ns(requireString(value))),
    'time.parse_duration_ns': (value) => exactInteger(parseDurationNs(requireString(value))),
    'time.date': (value) => {
      const t = civilTime(value);
      return [t.year, t.month, t.day];
    },
    'time.clock': (value) => {
      const t = civilTime(value);
      return [t.hour, t.minute, t.second];
    },
    'time.weekday': (value) => WEEKDAYS[civilTime(value).weekday],
    'time.add_date': (ns, years, months, days) => {
      const base = requireInteger(ns);
      const subMs = ((base % NS_PER_MS) + NS_PER_MS) % NS_PER_MS;
      const date = new Date(Number((base - subMs) / NS_PER_MS));
      date.setUTCFullYear(
        date.getUTCFullYear() + Number(requireInteger(years)),
        date.getUTCMonth() + Number(requireInteger(months)),
        date.getUTCDate() + Number(requireInteger(days)),
      );
      if (Number.isNaN(date.getTime())) throw new BuiltinError("time out of range");
      return exactInteger(BigInt(date.getTime()) * NS_PER_MS + subMs);
    },
    'time.diff': (a, b) => timeDiff(a, b),
    'io.jwt.decode': (token) => jwtDecode(token),
    'io.jwt.decode_verify': (token, constraints) => decodeVerify(token, constraints, context().nowNs),
  };
  for (const [name, alg] of Object.entries(VERIFY_BUILTINS)) {
    table[name] = (token, key) => verifyWithAlgorithm(alg, token, key);
  }
  const guarded: Record<string, HostBuiltin> = {};
  for (const [name, impl] of Object.entries(table)) {
    guarded[name] = (...args: unknown[]) => {
      try {
        return impl(...args);
      } catch (error) {
        // Undefined, as OPA's non-strict builtin errors; recorded so `eval` can explain it.
        context().builtinErrors.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }
    };
  }
  return guarded;
}

/** Names of the builtins Signalbox itself provides to WASM policies. */
export const HOST_BUILTINS: readonly string[] = Object.freeze(
  Object.keys(createHostBuiltins(() => ({ nowNs: 0n, builtinErrors: [] }))).sort(),
);

/** Every non-native builtin the engine can satisfy: the SDK's JavaScript ones plus ours. */
export const ENGINE_PROVIDED_BUILTINS: readonly string[] = Object.freeze([...new Set([...SDK_BUILTINS, ...HOST_BUILTINS])].sort());
