/**
 * OPA's time.* builtins (v1/topdown/time.go) and the Go standard library functions they call:
 * time.Parse and Time.Format with Go's layouts (go-time-layout.ts), time.ParseDuration (with
 * OPA's d, w and y units), AddDate and icza/gox's date difference. Timestamps are int64
 * nanoseconds, exact both ways: results go back as raw JSON text, and arguments beyond 2^53
 * arrive as BigInt (exact-arguments.ts).
 */
import {
  civilAt,
  daysFromCivil,
  daysInMonth,
  instantOf,
  NS_PER_SECOND,
  SECONDS_PER_DAY,
  splitNs,
  UTC,
  zoneAbbreviation,
  zoneFor,
  zoneOffset,
  type CivilTime,
  type Zone,
} from './calendar.js';
import { formatGoTime } from './go-time-format.js';
import { parseGoTimeNs } from './go-time-parse.js';
import { BuiltinError, operandTypeError, rawJson, type EvaluationContext, type HostBuiltin } from './host-builtin.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;

/** An integer result, exact: nanosecond timestamps do not fit in a double. */
function exactInteger(value: bigint): ArrayBuffer {
  return rawJson(value.toString());
}

function requireString(value: unknown): string {
  if (typeof value !== 'string') throw new BuiltinError('operand must be a string');
  return value;
}

/** An integral number as an exact BigInt (arguments beyond 2^53 arrive as BigInt), else undefined. */
function integerOf(value: unknown): bigint | undefined {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  return undefined;
}

/** OPA's int64 operands (add_date counts): integral and within int64, else an error. */
function requireInt64(value: unknown): bigint {
  if (typeof value !== 'number' && typeof value !== 'bigint') throw new BuiltinError('operand must be a number');
  const integer = integerOf(value);
  if (integer === undefined || integer < INT64_MIN || integer > INT64_MAX) throw new BuiltinError('operand must be an integer within int64');
  return integer;
}

/** OPA's tzTime timestamp: a number that is exactly an int64 (big.Float.Int64 exact), else "timestamp too big". */
function requireTimestamp(value: unknown): bigint {
  if (typeof value !== 'number' && typeof value !== 'bigint') throw new BuiltinError('operand 1 must be a number (ns) or [number (ns), string (tz)]');
  const integer = integerOf(value);
  if (integer === undefined || integer < INT64_MIN || integer > INT64_MAX) throw new BuiltinError('timestamp too big');
  return integer;
}

/** OPA's toSafeUnixNano: a time outside int64 nanoseconds is an error, not a wrapped value. */
function requireNsRange(ns: bigint): bigint {
  if (ns < INT64_MIN || ns > INT64_MAX) throw new BuiltinError('time outside of valid range');
  return ns;
}

// ---------------------------------------------------------------------------------------------
// The time builtins.
// ---------------------------------------------------------------------------------------------

interface ZonedTime {
  readonly ns: bigint;
  readonly zone: Zone;
  /** The layout of `[ns, zone, layout]`, "" when absent (only time.format reads it). */
  readonly layout: string;
}

const TZ_TIME_TYPE = 'either number (ns) or [number (ns), string (tz)]';

/**
 * OPA's tzTime: a number of ns, or an array `[ns]`, `[ns, zone]` or `[ns, zone, layout]`. As in
 * OPA, the types come first, then the zone and layout, and last whether the ns is an exact int64.
 */
function zonedTime(operand: unknown): ZonedTime {
  if (!Array.isArray(operand)) {
    if (typeof operand !== 'number' && typeof operand !== 'bigint') throw operandTypeError(1, operand, TZ_TIME_TYPE);
    return { ns: requireTimestamp(operand), zone: UTC, layout: '' };
  }
  if (operand.length === 0) throw operandTypeError(1, operand, TZ_TIME_TYPE);
  const [value, zoneName, layout] = operand as unknown[];
  if (typeof value !== 'number' && typeof value !== 'bigint') throw operandTypeError(1, value, 'number');
  if (operand.length > 1 && typeof zoneName !== 'string') throw operandTypeError(1, zoneName, 'string');
  const zone = typeof zoneName === 'string' ? zoneFor(zoneName) : UTC;
  if (operand.length > 2 && typeof layout !== 'string') throw operandTypeError(1, layout, 'string');
  return { ns: requireTimestamp(value), zone, layout: typeof layout === 'string' ? layout : '' };
}

/** OPA's names for Go's layout constants, accepted by time.format and time.parse_ns. */
const LAYOUT_CONSTANTS: Readonly<Record<string, string>> = {
  ANSIC: 'Mon Jan _2 15:04:05 2006',
  UnixDate: 'Mon Jan _2 15:04:05 MST 2006',
  RubyDate: 'Mon Jan 02 15:04:05 -0700 2006',
  RFC822: '02 Jan 06 15:04 MST',
  RFC822Z: '02 Jan 06 15:04 -0700',
  RFC850: 'Monday, 02-Jan-06 15:04:05 MST',
  RFC1123: 'Mon, 02 Jan 2006 15:04:05 MST',
  RFC1123Z: 'Mon, 02 Jan 2006 15:04:05 -0700',
  RFC3339: '2006-01-02T15:04:05Z07:00',
  RFC3339Nano: '2006-01-02T15:04:05.999999999Z07:00',
};

const layoutOf = (name: string): string => (Object.prototype.hasOwnProperty.call(LAYOUT_CONSTANTS, name) ? (LAYOUT_CONSTANTS[name] as string) : name);

/** OPA's time.format: the instant in its zone, by the layout given or RFC3339Nano. */
function formatTime(operand: unknown): string {
  const t = zonedTime(operand);
  const { seconds, nanos } = splitNs(t.ns);
  const civil = civilAt(t.zone, seconds);
  const time = { ...civil, nanosecond: Number(nanos), offset: zoneOffset(t.zone, seconds), zoneName: zoneAbbreviation(t.zone, seconds) };
  return formatGoTime(time, t.layout === '' ? (LAYOUT_CONSTANTS.RFC3339Nano as string) : layoutOf(t.layout));
}

function civilOf(t: ZonedTime): CivilTime {
  return civilAt(t.zone, splitNs(t.ns).seconds);
}

function weekday(t: CivilTime): (typeof WEEKDAYS)[number] {
  // 1970-01-01 was a Thursday.
  return WEEKDAYS[(((daysFromCivil(t.year, t.month, t.day) + 4) % 7) + 7) % 7] as (typeof WEEKDAYS)[number];
}

/**
 * Parses an RFC 3339 timestamp to nanoseconds since the epoch, exactly, as OPA does: Go's
 * time.Parse(time.RFC3339, s), whose layout parser (its fallback after the strict fast path) is
 * laxer than RFC 3339 (a 1-digit hour, "," before the fraction, any number of fraction digits).
 */
export function parseRfc3339Ns(text: string): bigint {
  return requireNsRange(parseGoTimeNs(LAYOUT_CONSTANTS.RFC3339 as string, text));
}

const GO_DURATION_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n], // micro sign
  ['\u03bcs', 1_000n], // Greek mu
  ['ms', 1_000_000n],
  ['s', NS_PER_SECOND],
  ['m', 60n * NS_PER_SECOND],
  ['h', 3600n * NS_PER_SECOND],
]);
const DURATION_LIMIT = 2n ** 63n;

/** Go's leadingFraction: digits until the value would pass 2^63; later digits are ignored. */
function leadingFraction(digits: string): { fraction: bigint; scale: number } {
  let fraction = 0n;
  let scale = 1;
  for (const digit of digits) {
    const next = fraction * 10n + BigInt(digit);
    if (next > DURATION_LIMIT) break;
    fraction = next;
    scale *= 10;
  }
  return { fraction, scale };
}

const invalidDuration = (text: string): BuiltinError => new BuiltinError(`invalid duration "${text.slice(0, 64)}"`);

/** One "<number><unit>" of a Go duration in ns, or undefined past 2^63. Go computes the fraction in float64, so do we. */
function durationSegmentNs(whole: string, fractionDigits: string, unitName: string): bigint | undefined {
  const unit = GO_DURATION_UNITS.get(unitName);
  const value = BigInt(whole || '0');
  if (unit === undefined || value > DURATION_LIMIT / unit) return undefined;
  const { fraction, scale } = leadingFraction(fractionDigits);
  const ns = value * unit + (fraction > 0n ? BigInt(Math.trunc(Number(fraction) * (Number(unit) / scale))) : 0n);
  return ns > DURATION_LIMIT ? undefined : ns;
}

/** Go's time.ParseDuration, with exact integer arithmetic where Go has it. */
function goParseDuration(text: string): bigint {
  const negative = text.startsWith('-');
  const body = /^[+-]/.test(text) ? text.slice(1) : text;
  if (body === '0') return 0n;
  if (body === '') throw invalidDuration(text);
  // Each segment: digits before and/or after a ".", then a unit (everything up to the next digit or ".").
  const segment = /(\d*)(?:\.(\d*))?([^\d.]*)/y;
  let total = 0n;
  while (segment.lastIndex < body.length) {
    const [, whole = '', fraction, unit = ''] = segment.exec(body) ?? [];
    if ((whole === '' && !fraction) || unit === '') throw invalidDuration(text);
    const ns = durationSegmentNs(whole, fraction ?? '', unit);
    if (ns === undefined) throw invalidDuration(text);
    total += ns;
    if (total > DURATION_LIMIT) throw invalidDuration(text);
  }
  if (negative) return -total;
  if (total > INT64_MAX) throw invalidDuration(text);
  return total;
}

/** OPA's extended units, in hours. */
const EXTENDED_UNIT_HOURS: Readonly<Record<string, number>> = { d: 24, w: 7 * 24, y: 365 * 24 };

/** Go's strconv.FormatFloat(x, 'f', -1, 64) for x >= 0: shortest round-trip digits, no exponent. */
function formatFloatFixed(x: number): string {
  const m = /^(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(String(x));
  if (!m) return String(x);
  const digits = `${m[1]}${m[2] ?? ''}`;
  const exponent = Number(m[3]) - (m[2]?.length ?? 0);
  if (exponent >= 0) return digits + '0'.repeat(exponent);
  const padded = digits.padStart(1 - exponent, '0');
  return `${padded.slice(0, exponent)}.${padded.slice(exponent)}`;
}

/**
 * OPA's parseExtendedDuration: a duration mentioning d, w or y is parsed by OPA's grammar (sign,
 * then segments of [0-9.]+ and a unit), its d/w/y segments rewritten as float64 hours, and the
 * result handed to Go's ParseDuration.
 */
function rewriteExtendedDuration(text: string): string {
  const sign = /^[+-]/.test(text) ? text.charAt(0) : '';
  const segment = /([0-9.]+)(ms|us|\u00b5s|ns|[a-z])/y;
  segment.lastIndex = sign.length;
  let rewritten = sign;
  do {
    const m = segment.exec(text);
    if (!m) throw invalidDuration(text);
    const [, digits = '', unit = ''] = m;
    const hoursPerUnit = EXTENDED_UNIT_HOURS[unit];
    // Go's strconv.ParseFloat: "1." and ".5" parse, "." and "1.2.3" do not.
    const value = Number(digits);
    if (hoursPerUnit !== undefined && !Number.isFinite(value)) throw invalidDuration(text);
    rewritten += hoursPerUnit === undefined ? `${digits}${unit}` : `${formatFloatFixed(value * hoursPerUnit)}h`;
  } while (segment.lastIndex < text.length);
  return rewritten;
}

/** Parses a duration ("1h30m", "-1.5s", "2d") to nanoseconds, exactly as OPA does. */
export function parseDurationNs(text: string): bigint {
  if (text === '') throw new BuiltinError('invalid duration ""');
  return goParseDuration(/[dwy]/.test(text) ? rewriteExtendedDuration(text) : text);
}

/** Go's t.AddDate in the operand's zone: calendar fields overflow into larger ones, as time.Date does. */
function addDate(operand: unknown, years: unknown, months: unknown, days: unknown): bigint {
  const t = zonedTime(operand);
  const [dy, dm, dd] = [years, months, days].map((count) => Number(requireInt64(count))) as [number, number, number];
  const { seconds, nanos } = splitNs(t.ns);
  const c = civilAt(t.zone, seconds);
  const monthIndex = c.month - 1 + dm;
  const year = c.year + dy + Math.floor(monthIndex / 12);
  const dayNumber = daysFromCivil(year, (((monthIndex % 12) + 12) % 12) + 1, 1) + c.day - 1 + dd;
  const localSeconds = dayNumber * SECONDS_PER_DAY + c.hour * 3600 + c.minute * 60 + c.second;
  // Far outside int64 ns (about ±292 years): also keeps Intl within the dates it can format.
  if (!Number.isSafeInteger(localSeconds) || Math.abs(localSeconds) > 1e11) throw new BuiltinError('time outside of valid range');
  return requireNsRange(BigInt(instantOf(t.zone, localSeconds)) * NS_PER_SECOND + nanos);
}

/**
 * OPA's time.diff (icza/gox): [years, months, days, hours, minutes, seconds] between two instants
 * read in the FIRST operand's zone, ordered by instant; a negative day count borrows the length of
 * the earlier instant's month.
 */
function timeDiff(a: unknown, b: unknown): number[] {
  const first = zonedTime(a);
  const second = zonedTime(b);
  const [early, late] = first.ns > second.ns ? [second, first] : [first, second];
  const t1 = civilAt(first.zone, splitNs(early.ns).seconds);
  const t2 = civilAt(first.zone, splitNs(late.ns).seconds);
  let years = t2.year - t1.year;
  let months = t2.month - t1.month;
  let days = t2.day - t1.day;
  let hours = t2.hour - t1.hour;
  let minutes = t2.minute - t1.minute;
  let seconds = t2.second - t1.second;
  if (seconds < 0) (seconds += 60), minutes--;
  if (minutes < 0) (minutes += 60), hours--;
  if (hours < 0) (hours += 24), days--;
  if (days < 0) (days += daysInMonth(t1.year, t1.month)), months--;
  if (months < 0) (months += 12), years--;
  return [years, months, days, hours, minutes, seconds];
}

/** The time.* builtins keyed by OPA builtin name; time.now_ns reads the evaluation's fixed time. */
export function timeBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  return {
    'time.now_ns': () => exactInteger(context().nowNs),
    'time.parse_rfc3339_ns': (value) => exactInteger(parseRfc3339Ns(requireString(value))),
    'time.parse_duration_ns': (value) => exactInteger(parseDurationNs(requireString(value))),
    'time.date': (value) => {
      const t = civilOf(zonedTime(value));
      return [t.year, t.month, t.day];
    },
    'time.clock': (value) => {
      const t = civilOf(zonedTime(value));
      return [t.hour, t.minute, t.second];
    },
    'time.weekday': (value) => weekday(civilOf(zonedTime(value))),
    'time.add_date': (ns, years, months, days) => exactInteger(addDate(ns, years, months, days)),
    'time.diff': (a, b) => timeDiff(a, b),
    'time.format': (value) => formatTime(value),
    'time.parse_ns': (layout, value) => {
      if (typeof layout !== 'string') throw operandTypeError(1, layout, 'string');
      if (typeof value !== 'string') throw operandTypeError(2, value, 'string');
      return exactInteger(requireNsRange(parseGoTimeNs(layoutOf(layout), value)));
    },
  };
}
