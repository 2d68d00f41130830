/**
 * Go's time.Parse for time.parse_ns (and time.parse_rfc3339_ns): a port of parse in Go's
 * time/format.go, with its error messages, over the layout lexer in go-time-layout.ts.
 */
import { BuiltinError } from './host-builtin.js';
import { daysFromCivil, daysInMonth } from './calendar.js';
import { ISO_TZ, LONG_DAYS, LONG_MONTHS, SHORT_DAYS, SHORT_MONTHS, Std, isDigitAt, nextStdChunk } from './go-time-layout.js';

/** Go's strconv.Quote, closely enough for error messages. */
const quote = (s: string): string => JSON.stringify(s);

/** Go's ParseError, as its Error() prints it. */
function parseError(layout: string, value: string, layoutElem: string, valueElem: string, message = ''): BuiltinError {
  if (message !== '') return new BuiltinError(`parsing time ${quote(value)}${message}`);
  return new BuiltinError(`parsing time ${quote(value)} as ${quote(layout)}: cannot parse ${quote(valueElem)} as ${quote(layoutElem)}`);
}

class Bad extends Error {}

function getnum(s: string, fixed: boolean): [number, string] {
  if (!isDigitAt(s, 0)) throw new Bad();
  if (!isDigitAt(s, 1)) {
    if (fixed) throw new Bad();
    return [Number(s[0]), s.slice(1)];
  }
  return [Number(s.slice(0, 2)), s.slice(2)];
}

function getnum3(s: string, fixed: boolean): [number, string] {
  let i = 0;
  while (i < 3 && isDigitAt(s, i)) i++;
  if (i === 0 || (fixed && i !== 3)) throw new Bad();
  return [Number(s.slice(0, i)), s.slice(i)];
}

/** Go's atoi: an optional sign, then digits and nothing else. */
function atoi(s: string): number {
  const m = /^([+-]?)(\d+)$/.exec(s);
  if (!m) throw new Bad();
  return Number(m[2]) * (m[1] === '-' ? -1 : 1);
}

function lookup(table: readonly string[], value: string): [number, string] {
  const index = table.findIndex((name) => value.length >= name.length && value.slice(0, name.length).toLowerCase() === name.toLowerCase());
  if (index < 0) throw new Bad();
  return [index, value.slice((table[index] as string).length)];
}

/** Go's skip: the layout's literal text must match; a space matches any run of spaces. */
function skip(value: string, prefix: string): string | undefined {
  let v = value;
  let p = prefix;
  while (p.length > 0) {
    if (p[0] === ' ') {
      if (v.length > 0 && v[0] !== ' ') return undefined;
      p = p.replace(/^ +/, '');
      v = v.replace(/^ +/, '');
      continue;
    }
    if (v.length === 0 || v[0] !== p[0]) return undefined;
    p = p.slice(1);
    v = v.slice(1);
  }
  return v;
}

const commaOrPeriod = (c: string | undefined): boolean => c === '.' || c === ',';

/** Go's parseNanoseconds: the separator and up to 9 digits, scaled to nanoseconds. */
function parseNanoseconds(value: string, nbytes: number): number {
  if (!commaOrPeriod(value[0])) throw new Bad();
  const n = Math.min(nbytes, 10);
  return atoi(value.slice(1, n)) * 10 ** (10 - n);
}

function parseSignedOffset(value: string): number {
  if (value[0] !== '-' && value[0] !== '+') return 0;
  const m = /^\d+/.exec(value.slice(1));
  if (!m || Number(m[0]) > 23) return 0;
  return 1 + m[0].length;
}

/** Go's parseTimeZone: how long a zone abbreviation at the start of value is, or 0. */
function parseTimeZone(value: string): number {
  if (value.length < 3) return 0;
  if (value.startsWith('ChST') || value.startsWith('MeST')) return 4;
  if (value.startsWith('GMT')) return value.length === 3 ? 3 : 3 + parseSignedOffset(value.slice(3));
  if (value[0] === '+' || value[0] === '-') return parseSignedOffset(value);
  let upper = 0;
  while (upper < 6 && upper < value.length && value[upper]! >= 'A' && value[upper]! <= 'Z') upper++;
  if (upper === 3) return 3;
  if (upper === 4 && (value[3] === 'T' || value.startsWith('WITA'))) return 4;
  if (upper === 5 && value[4] === 'T') return 5;
  return 0;
}

const NS_PER_SECOND = 1_000_000_000n;

/**
 * Go's time.Parse(layout, value) as nanoseconds since the epoch. A zone abbreviation without an
 * offset ("MST", "GMT+3") is read as Go does on a host whose local zone does not use it: the clock
 * reading is taken as UTC, the name only labels it.
 */
export function parseGoTimeNs(layout: string, value: string): bigint {
  let rest = layout;
  let v = value;
  let year = 0;
  let month = -1;
  let day = -1;
  let yday = -1;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let nanos = 0;
  let amSet = false;
  let pmSet = false;
  let utc = false;
  let zoneOffset: number | undefined;
  for (;;) {
    const chunk = nextStdChunk(rest);
    const skipped = skip(v, chunk.prefix);
    if (skipped === undefined) throw parseError(layout, value, chunk.prefix, v);
    v = skipped;
    if (chunk.std === Std.None) {
      if (v.length !== 0) throw parseError(layout, value, '', v, `: extra text: ${quote(v)}`);
      break;
    }
    rest = chunk.suffix;
    const hold = v;
    let rangeError = '';
    try {
      switch (chunk.std) {
        case Std.Year:
          if (v.length < 2) throw new Bad();
          year = atoi(v.slice(0, 2));
          v = v.slice(2);
          year += year >= 69 ? 1900 : 2000;
          break;
        case Std.LongYear:
          if (v.length < 4 || !isDigitAt(v, 0)) throw new Bad();
          year = atoi(v.slice(0, 4));
          v = v.slice(4);
          break;
        case Std.Month:
          [month, v] = lookup(SHORT_MONTHS, v);
          month++;
          break;
        case Std.LongMonth:
          [month, v] = lookup(LONG_MONTHS, v);
          month++;
          break;
        case Std.NumMonth:
        case Std.ZeroMonth:
          [month, v] = getnum(v, chunk.std === Std.ZeroMonth);
          if (month <= 0 || month > 12) rangeError = 'month';
          break;
        case Std.WeekDay:
          [, v] = lookup(SHORT_DAYS, v);
          break;
        case Std.LongWeekDay:
          [, v] = lookup(LONG_DAYS, v);
          break;
        case Std.Day:
        case Std.UnderDay:
        case Std.ZeroDay:
          if (chunk.std === Std.UnderDay && v[0] === ' ') v = v.slice(1);
          [day, v] = getnum(v, chunk.std === Std.ZeroDay);
          break;
        case Std.UnderYearDay:
        case Std.ZeroYearDay:
          for (let i = 0; i < 2; i++) if (chunk.std === Std.UnderYearDay && v[0] === ' ') v = v.slice(1);
          [yday, v] = getnum3(v, chunk.std === Std.ZeroYearDay);
          break;
        case Std.Hour:
          [hour, v] = getnum(v, false);
          if (hour < 0 || hour >= 24) rangeError = 'hour';
          break;
        case Std.Hour12:
        case Std.ZeroHour12:
          [hour, v] = getnum(v, chunk.std === Std.ZeroHour12);
          if (hour < 0 || hour > 12) rangeError = 'hour';
          break;
        case Std.Minute:
        case Std.ZeroMinute:
          [minute, v] = getnum(v, chunk.std === Std.ZeroMinute);
          if (minute < 0 || minute >= 60) rangeError = 'minute';
          break;
        case Std.Second:
        case Std.ZeroSecond: {
          [second, v] = getnum(v, chunk.std === Std.ZeroSecond);
          if (second < 0 || second >= 60) {
            rangeError = 'second';
            break;
          }
          // A fractional second in the value but not in the layout is still read.
          if (v.length >= 2 && commaOrPeriod(v[0]) && isDigitAt(v, 1)) {
            const next = nextStdChunk(rest).std;
            if (next === Std.FracSecond0 || next === Std.FracSecond9) break;
            let n = 2;
            while (n < v.length && isDigitAt(v, n)) n++;
            nanos = parseNanoseconds(v, n);
            v = v.slice(n);
          }
          break;
        }
        case Std.PM:
        case Std.pm: {
          if (v.length < 2) throw new Bad();
          const p = v.slice(0, 2);
          v = v.slice(2);
          const [am, pm] = chunk.std === Std.PM ? ['AM', 'PM'] : ['am', 'pm'];
          if (p === pm) pmSet = true;
          else if (p === am) amSet = true;
          else throw new Bad();
          break;
        }
        case Std.TZ: {
          if (v.startsWith('UTC')) {
            utc = true;
            v = v.slice(3);
            break;
          }
          // The abbreviation must look like one, but sets no offset (see parseGoTimeNs).
          const n = parseTimeZone(v);
          if (n === 0) throw new Bad();
          v = v.slice(n);
          break;
        }
        case Std.FracSecond0: {
          const n = 1 + chunk.digits;
          if (v.length < n) throw new Bad();
          nanos = parseNanoseconds(v, n);
          v = v.slice(n);
          break;
        }
        case Std.FracSecond9: {
          if (v.length < 2 || !commaOrPeriod(v[0]) || !isDigitAt(v, 1)) break;
          let i = 0;
          while (i + 1 < v.length && isDigitAt(v, i + 1)) i++;
          nanos = parseNanoseconds(v, 1 + i);
          v = v.slice(1 + i);
          break;
        }
        default: {
          if (ISO_TZ.has(chunk.std) && v[0] === 'Z') {
            v = v.slice(1);
            utc = true;
            break;
          }
          const std = chunk.std;
          let fields: [string, string, string, string];
          if (std === Std.ISO8601ColonTZ || std === Std.NumColonTZ) {
            if (v.length < 6 || v[3] !== ':') throw new Bad();
            fields = [v.slice(0, 1), v.slice(1, 3), v.slice(4, 6), '00'];
            v = v.slice(6);
          } else if (std === Std.NumShortTZ || std === Std.ISO8601ShortTZ) {
            if (v.length < 3) throw new Bad();
            fields = [v.slice(0, 1), v.slice(1, 3), '00', '00'];
            v = v.slice(3);
          } else if (std === Std.ISO8601ColonSecondsTZ || std === Std.NumColonSecondsTZ) {
            if (v.length < 9 || v[3] !== ':' || v[6] !== ':') throw new Bad();
            fields = [v.slice(0, 1), v.slice(1, 3), v.slice(4, 6), v.slice(7, 9)];
            v = v.slice(9);
          } else if (std === Std.ISO8601SecondsTZ || std === Std.NumSecondsTz) {
            if (v.length < 7) throw new Bad();
            fields = [v.slice(0, 1), v.slice(1, 3), v.slice(3, 5), v.slice(5, 7)];
            v = v.slice(7);
          } else {
            if (v.length < 5) throw new Bad();
            fields = [v.slice(0, 1), v.slice(1, 3), v.slice(3, 5), '00'];
            v = v.slice(5);
          }
          const [sign, hh, mm, ss] = fields;
          const [hr] = getnum(hh, true);
          const [mi] = getnum(mm, true);
          const [se] = getnum(ss, true);
          // Go allows offsets of 24 hours, 60 minutes or 60 seconds.
          if (hr > 24) rangeError = 'time zone offset hour';
          if (mi > 60) rangeError = 'time zone offset minute';
          if (se > 60) rangeError = 'time zone offset second';
          zoneOffset = (hr * 60 + mi) * 60 + se;
          if (sign === '-') zoneOffset = -zoneOffset;
          else if (sign !== '+') throw new Bad();
        }
      }
    } catch (error) {
      if (!(error instanceof Bad)) throw error;
      if (rangeError !== '') throw parseError(layout, value, chunk.element, v, `: ${rangeError} out of range`);
      throw parseError(layout, value, chunk.element, hold);
    }
    if (rangeError !== '') throw parseError(layout, value, chunk.element, v, `: ${rangeError} out of range`);
  }
  if (pmSet && hour < 12) hour += 12;
  else if (amSet && hour === 12) hour = 0;

  if (yday >= 0) {
    const leap = daysInMonth(year, 2) === 29;
    let m = 0;
    let d = 0;
    if (leap) {
      if (yday === 31 + 29) {
        m = 2;
        d = 29;
      } else if (yday > 31 + 29) yday--;
    }
    if (yday < 1 || yday > 365) throw parseError(layout, value, '', v, ': day-of-year out of range');
    if (m === 0) {
      // Months of a common year, yday now counted without 29 February.
      const before = (month1: number): number => daysFromCivil(2001, month1, 1) - daysFromCivil(2001, 1, 1);
      m = Math.floor((yday - 1) / 31) + 1;
      if (m < 12 && before(m + 1) < yday) m++;
      d = yday - before(m);
    }
    if (month >= 0 && month !== m) throw parseError(layout, value, '', v, ': day-of-year does not match month');
    month = m;
    if (day >= 0 && day !== d) throw parseError(layout, value, '', v, ': day-of-year does not match day');
    day = d;
  } else {
    if (month < 0) month = 1;
    if (day < 0) day = 1;
  }
  if (day < 1 || day > daysInMonth(year, month)) throw parseError(layout, value, '', v, ': day out of range');

  // A zone name alone ("PST", even "GMT+3") only labels the time: Go reads the clock as UTC.
  const offset = !utc && zoneOffset !== undefined ? zoneOffset : 0;
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
  return BigInt(seconds) * NS_PER_SECOND + BigInt(nanos);
}
