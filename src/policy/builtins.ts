/**
 * Host builtins: the non-native OPA builtins Signalbox provides to policies compiled to WASM.
 *
 * opa-wasm calls these synchronously during evaluation with JSON-decoded arguments. Their
 * semantics follow OPA's topdown implementations (v1/topdown/time.go, tokens.go) and the Go
 * standard library functions those call. As in OPA with strict builtin errors off (the default,
 * and what opa-envoy-plugin runs), an error makes the call undefined rather than failing the whole
 * query; the error is recorded on the evaluation context for `signalbox eval`.
 *
 * Results that may hold integers beyond 2^53 (nanosecond timestamps, JWT claims) are returned as
 * raw JSON text, which opa-wasm loads verbatim. Arguments cannot get the same treatment: opa-wasm
 * hands them over through JSON.parse, so an argument integer beyond 2^53 arrives rounded.
 */
import { decodeJson, decodeVerifyJson, VERIFY_BUILTINS, verifyWithAlgorithm } from './jwt-builtins.js';
import { SDK_BUILTINS } from './sdk-builtins.js';

/** Per-evaluation state the builtins read: OPA fixes `time.now_ns()` for one whole query. */
export interface EvaluationContext {
  readonly nowNs: bigint;
  readonly builtinErrors: string[];
}

type HostBuiltin = (...args: unknown[]) => unknown;

const NS_PER_SECOND = 1_000_000_000n;
const SECONDS_PER_DAY = 86_400;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/** Bounds of int64 as doubles: every integral double in [-2^63, 2^63) converts to int64 exactly. */
const INT64_MIN_DOUBLE = -(2 ** 63);
const INT64_LIMIT_DOUBLE = 2 ** 63;
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;

class BuiltinError extends Error {}

/** Raw JSON text as the ArrayBuffer opa-wasm loads verbatim (a JS value would go through JSON.stringify). */
function rawJson(text: string): ArrayBuffer {
  const bytes = new TextEncoder().encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** An integer result, exact: nanosecond timestamps do not fit in a double. */
function exactInteger(value: bigint): ArrayBuffer {
  return rawJson(value.toString());
}

function requireString(value: unknown): string {
  if (typeof value !== 'string') throw new BuiltinError('operand must be a string');
  return value;
}

/** OPA's int64 operands (timestamps, add_date counts): integral and within int64, else an error. */
function requireInt64(value: unknown): bigint {
  if (typeof value !== 'number') throw new BuiltinError('operand must be a number');
  if (!Number.isInteger(value) || value < INT64_MIN_DOUBLE || value >= INT64_LIMIT_DOUBLE) {
    throw new BuiltinError('operand must be an integer within int64');
  }
  return BigInt(value);
}

/** OPA's toSafeUnixNano: a time outside int64 nanoseconds is an error, not a wrapped value. */
function requireNsRange(ns: bigint): bigint {
  if (ns < INT64_MIN || ns > INT64_MAX) throw new BuiltinError('time outside of valid range');
  return ns;
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic on the proleptic Gregorian calendar, as Go's time package does it. Pure
// arithmetic rather than Date.UTC, which maps years 0-99 to 1900-1999.
// ---------------------------------------------------------------------------------------------

interface CivilTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** Days since 1970-01-01 of a date (month 1-12), after H. Hinnant's days_from_civil. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/** The inverse of daysFromCivil. */
function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  return { year: era * 400 + yearOfEra + (month <= 2 ? 1 : 0), month, day: dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1 };
}

function daysInMonth(year: number, month: number): number {
  return month === 12 ? 31 : daysFromCivil(year, month + 1, 1) - daysFromCivil(year, month, 1);
}

/** Seconds since the epoch of a civil time read as UTC. */
function civilSeconds(t: CivilTime): number {
  return daysFromCivil(t.year, t.month, t.day) * SECONDS_PER_DAY + t.hour * 3600 + t.minute * 60 + t.second;
}

function utcCivil(epochSeconds: number): CivilTime {
  const days = Math.floor(epochSeconds / SECONDS_PER_DAY);
  const secondOfDay = epochSeconds - days * SECONDS_PER_DAY;
  return { ...civilFromDays(days), hour: Math.floor(secondOfDay / 3600), minute: Math.floor(secondOfDay / 60) % 60, second: secondOfDay % 60 };
}

/** Splits nanoseconds into whole seconds (floored, as Go's Unix time) and the nanosecond remainder. */
function splitNs(ns: bigint): { seconds: number; nanos: bigint } {
  const seconds = ns / NS_PER_SECOND - (ns % NS_PER_SECOND < 0n ? 1n : 0n);
  return { seconds: Number(seconds), nanos: ns - seconds * NS_PER_SECOND };
}

// ---------------------------------------------------------------------------------------------
// Time zones: ICU's tz data through Intl, with Go's rules for which names exist.
// ---------------------------------------------------------------------------------------------

/** A zone as OPA's tzTime resolves it: UTC (pure arithmetic) or an ICU-backed named zone. */
type Zone = { readonly kind: 'utc' } | { readonly kind: 'named'; readonly formatter: Intl.DateTimeFormat };

const UTC: Zone = { kind: 'utc' };

/**
 * Go's time.LoadLocation takes zone names case-sensitively and also loads the IANA aliases that
 * ICU folds into a canonical ID. Intl matches names case-insensitively (it would accept "utc"
 * and "america/new_york", which OPA rejects), so a name must be spelled exactly as in
 * Intl.supportedValuesOf("timeZone") or in this list: the other names in Go's tz database
 * (time/tzdata, which OPA links), including both spellings where ICU and IANA disagree on the
 * canonical one (Asia/Calcutta, Asia/Kolkata), so the check does not depend on the ICU version.
 */
const GO_ZONE_ALIASES = `
  Africa/Asmara Africa/Asmera Africa/Timbuktu
  America/Argentina/Buenos_Aires America/Argentina/Catamarca America/Argentina/ComodRivadavia
  America/Argentina/Cordoba America/Argentina/Jujuy America/Argentina/Mendoza America/Atikokan
  America/Atka America/Buenos_Aires America/Catamarca America/Coral_Harbour America/Cordoba
  America/Ensenada America/Fort_Wayne America/Godthab America/Indiana/Indianapolis America/Indianapolis
  America/Jujuy America/Kentucky/Louisville America/Knox_IN America/Kralendijk America/Louisville
  America/Lower_Princes America/Marigot America/Mendoza America/Montreal America/Nipigon America/Nuuk
  America/Pangnirtung America/Porto_Acre America/Rainy_River America/Rosario America/Santa_Isabel
  America/Shiprock America/St_Barthelemy America/Thunder_Bay America/Virgin America/Yellowknife
  Antarctica/South_Pole
  Arctic/Longyearbyen
  Asia/Ashkhabad Asia/Calcutta Asia/Choibalsan Asia/Chongqing Asia/Chungking Asia/Dacca Asia/Harbin
  Asia/Ho_Chi_Minh Asia/Istanbul Asia/Kashgar Asia/Kathmandu Asia/Katmandu Asia/Kolkata Asia/Macao
  Asia/Rangoon Asia/Saigon Asia/Tel_Aviv Asia/Thimbu Asia/Ujung_Pandang Asia/Ulan_Bator Asia/Yangon
  Atlantic/Faeroe Atlantic/Faroe Atlantic/Jan_Mayen
  Australia/ACT Australia/Canberra Australia/Currie Australia/LHI Australia/NSW Australia/North
  Australia/Queensland Australia/South Australia/Tasmania Australia/Victoria Australia/West
  Australia/Yancowinna
  Brazil/Acre Brazil/DeNoronha Brazil/East Brazil/West
  CET CST6CDT Cuba EET EST EST5EDT Egypt Eire GB GB-Eire GMT GMT+0 GMT-0 GMT0 Greenwich HST Hongkong
  Iceland Iran Israel Jamaica Japan Kwajalein Libya MET MST MST7MDT NZ NZ-CHAT Navajo PRC PST8PDT
  Poland Portugal ROC ROK Singapore Turkey UCT UTC Universal W-SU
  Canada/Atlantic Canada/Central Canada/Eastern Canada/Mountain Canada/Newfoundland Canada/Pacific
  Canada/Saskatchewan Canada/Yukon
  Chile/Continental Chile/EasterIsland
  Etc/GMT Etc/GMT+0 Etc/GMT+1 Etc/GMT+10 Etc/GMT+11 Etc/GMT+12 Etc/GMT+2 Etc/GMT+3 Etc/GMT+4 Etc/GMT+5
  Etc/GMT+6 Etc/GMT+7 Etc/GMT+8 Etc/GMT+9 Etc/GMT-0 Etc/GMT-1 Etc/GMT-10 Etc/GMT-11 Etc/GMT-12
  Etc/GMT-13 Etc/GMT-14 Etc/GMT-2 Etc/GMT-3 Etc/GMT-4 Etc/GMT-5 Etc/GMT-6 Etc/GMT-7 Etc/GMT-8 Etc/GMT-9
  Etc/GMT0 Etc/Greenwich Etc/UCT Etc/UTC Etc/Universal Etc/Zulu
  Europe/Belfast Europe/Bratislava Europe/Busingen Europe/Kiev Europe/Kyiv Europe/Mariehamn
  Europe/Nicosia Europe/Podgorica Europe/San_Marino Europe/Tiraspol Europe/Uzhgorod Europe/Vatican
  Europe/Zaporozhye
  Mexico/BajaNorte Mexico/BajaSur Mexico/General
  Pacific/Chuuk Pacific/Enderbury Pacific/Johnston Pacific/Kanton Pacific/Pohnpei Pacific/Ponape
  Pacific/Samoa Pacific/Truk Pacific/Yap
  US/Alaska US/Aleutian US/Arizona US/Central US/East-Indiana US/Eastern US/Hawaii US/Indiana-Starke
  US/Michigan US/Mountain US/Pacific US/Samoa
`;

let exactZoneNames: ReadonlySet<string> | undefined;

function isGoZoneName(name: string): boolean {
  exactZoneNames ??= new Set([...Intl.supportedValuesOf('timeZone'), ...GO_ZONE_ALIASES.split(/\s+/).filter(Boolean)]);
  return exactZoneNames.has(name);
}

const namedZones = new Map<string, Zone>();

function namedZone(name: string): Zone {
  let zone = namedZones.get(name);
  if (!zone) {
    let formatter: Intl.DateTimeFormat;
    try {
      formatter = new Intl.DateTimeFormat('en-US', {
        timeZone: name,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch {
      throw new BuiltinError(`unknown time zone "${name.slice(0, 64)}"`);
    }
    zone = { kind: 'named', formatter };
    namedZones.set(name, zone);
  }
  return zone;
}

/** OPA's zone names: ""/"UTC" are UTC, "Local" the host's zone, anything else a Go zone name. */
function zoneFor(name: string): Zone {
  // Go's tz database has a "Factory" zone (offset 0, unknown to ICU).
  if (name === '' || name === 'UTC' || name === 'Factory') return UTC;
  if (name === 'Local') return namedZone(Intl.DateTimeFormat().resolvedOptions().timeZone);
  if (!isGoZoneName(name)) throw new BuiltinError(`unknown time zone "${name.slice(0, 64)}"`);
  return namedZone(name);
}

/** The wall-clock time in `zone` at an instant. */
function civilAt(zone: Zone, epochSeconds: number): CivilTime {
  if (zone.kind === 'utc') return utcCivil(epochSeconds);
  const parts: Partial<Record<Intl.DateTimeFormatPartTypes, string>> = {};
  for (const part of zone.formatter.formatToParts(new Date(epochSeconds * 1000))) parts[part.type] = part.value;
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
  };
}

/** Seconds east of UTC in effect in `zone` at an instant. */
function zoneOffset(zone: Zone, epochSeconds: number): number {
  return zone.kind === 'utc' ? 0 : civilSeconds(civilAt(zone, epochSeconds)) - epochSeconds;
}

/**
 * The instant of a wall-clock time in `zone` (given as seconds read as UTC), resolved as Go's
 * time.Date does: the offset in effect at that reading, corrected once if it lands in another
 * period, so times in a DST gap or overlap come out as in OPA.
 */
function instantOf(zone: Zone, localSeconds: number): number {
  const guess = zoneOffset(zone, localSeconds);
  // Go re-reads the offset only when the first one is non-zero (a quirk kept for fidelity).
  return localSeconds - (guess === 0 ? 0 : zoneOffset(zone, localSeconds - guess));
}

// ---------------------------------------------------------------------------------------------
// The time builtins.
// ---------------------------------------------------------------------------------------------

interface ZonedTime {
  readonly ns: bigint;
  readonly zone: Zone;
}

/**
 * OPA's tzTime: a number of ns, or an array `[ns]`, `[ns, zone]` or `[ns, zone, layout]` (the
 * layout only matters to time.format, but must be a string). The ns must be an exact int64.
 */
function zonedTime(operand: unknown): ZonedTime {
  if (!Array.isArray(operand)) return { ns: requireInt64(operand), zone: UTC };
  if (operand.length === 0) throw new BuiltinError('operand must be a number (ns) or [ns, zone]');
  const zone = operand.length > 1 ? zoneFor(requireString(operand[1])) : UTC;
  if (operand.length > 2) requireString(operand[2]);
  return { ns: requireInt64(operand[0]), zone };
}

function civilOf(t: ZonedTime): CivilTime {
  return civilAt(t.zone, splitNs(t.ns).seconds);
}

function weekday(t: CivilTime): (typeof WEEKDAYS)[number] {
  // 1970-01-01 was a Thursday.
  return WEEKDAYS[(((daysFromCivil(t.year, t.month, t.day) + 4) % 7) + 7) % 7] as (typeof WEEKDAYS)[number];
}

function validCivil(t: CivilTime): boolean {
  const dateValid = t.month >= 1 && t.month <= 12 && t.day >= 1 && t.day <= daysInMonth(t.year, t.month);
  return dateValid && t.hour <= 23 && t.minute <= 59 && t.second <= 59;
}

/**
 * Go's time.Parse(time.RFC3339, s), whose layout parser (its fallback after the strict fast path)
 * is laxer than RFC 3339: a 1-digit hour, "," before the fraction, any number of fraction digits
 * (truncated to ns), offsets up to ±24:60; but "T" and "Z" are case-sensitive.
 */
const GO_RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/** Parses an RFC 3339 timestamp to nanoseconds since the Unix epoch, exactly, as OPA does. */
export function parseRfc3339Ns(text: string): bigint {
  const m = GO_RFC3339.exec(text);
  if (!m) throw new BuiltinError(`cannot parse "${text.slice(0, 64)}" as RFC 3339`);
  const field = (i: number): number => Number(m[i] ?? 0);
  const t: CivilTime = { year: field(1), month: field(2), day: field(3), hour: field(4), minute: field(5), second: field(6) };
  const [offsetHours, offsetMinutes] = [field(9), field(10)];
  if (!validCivil(t) || offsetHours > 24 || offsetMinutes > 60) throw new BuiltinError(`"${text.slice(0, 64)}" is out of range`);
  const seconds = civilSeconds(t) - (m[8] === '-' ? -1 : 1) * (offsetHours * 3600 + offsetMinutes * 60);
  const fraction = BigInt((m[7] ?? '').slice(0, 9).padEnd(9, '0'));
  return requireNsRange(BigInt(seconds) * NS_PER_SECOND + fraction);
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

/** Implementations keyed by OPA builtin name, closed over the evaluation context accessor. */
export function createHostBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  const table: Record<string, HostBuiltin> = {
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
    // JWT results are raw JSON text too, so claims beyond 2^53 reach the policy exactly.
    'io.jwt.decode': (token) => rawJson(decodeJson(token)),
    'io.jwt.decode_verify': (token, constraints) => rawJson(decodeVerifyJson(token, constraints, context().nowNs)),
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
