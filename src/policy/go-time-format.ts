/**
 * Go's Time.Format for time.format: a port of appendFormat in Go's time/format.go, over the
 * layout lexer in go-time-layout.ts.
 */
import { daysFromCivil, type CivilTime } from './calendar.js';
import { ISO_TZ, LONG_DAYS, LONG_MONTHS, NUM_TZ, SHORT_DAYS, SHORT_MONTHS, Std, nextStdChunk } from './go-time-layout.js';

/** Go's appendInt: the decimal digits of x, zero-padded to `width`, after a "-" for negatives. */
function padInt(x: number, width: number): string {
  const digits = String(Math.abs(x)).padStart(width, '0');
  return x < 0 ? `-${digits}` : digits;
}

/** A wall-clock reading with everything Go's Format needs. */
export interface FormatTime extends CivilTime {
  readonly nanosecond: number;
  /** Seconds east of UTC. */
  readonly offset: number;
  /** The zone abbreviation ("UTC", "EST"). */
  readonly zoneName: string;
}


/** Go's Time.Format(layout). */
export function formatGoTime(t: FormatTime, layout: string): string {
  const out: string[] = [];
  const yearDay = daysFromCivil(t.year, t.month, t.day) - daysFromCivil(t.year, 1, 1) + 1;
  const weekday = (((daysFromCivil(t.year, t.month, t.day) + 4) % 7) + 7) % 7;
  const hour12 = t.hour % 12 === 0 ? 12 : t.hour % 12;
  let rest = layout;
  while (rest !== '') {
    const chunk = nextStdChunk(rest);
    out.push(chunk.prefix);
    if (chunk.std === Std.None) break;
    rest = chunk.suffix;
    const std = chunk.std;
    switch (std) {
      case Std.Year:
        out.push(padInt(Math.abs(t.year) % 100, 2));
        break;
      case Std.LongYear:
        out.push(padInt(t.year, 4));
        break;
      case Std.Month:
        out.push(SHORT_MONTHS[t.month - 1] as string);
        break;
      case Std.LongMonth:
        out.push(LONG_MONTHS[t.month - 1] as string);
        break;
      case Std.NumMonth:
        out.push(padInt(t.month, 0));
        break;
      case Std.ZeroMonth:
        out.push(padInt(t.month, 2));
        break;
      case Std.WeekDay:
        out.push(SHORT_DAYS[weekday] as string);
        break;
      case Std.LongWeekDay:
        out.push(LONG_DAYS[weekday] as string);
        break;
      case Std.Day:
        out.push(padInt(t.day, 0));
        break;
      case Std.UnderDay:
        out.push(t.day < 10 ? ` ${t.day}` : String(t.day));
        break;
      case Std.ZeroDay:
        out.push(padInt(t.day, 2));
        break;
      case Std.UnderYearDay:
        out.push(String(yearDay).padStart(3, ' '));
        break;
      case Std.ZeroYearDay:
        out.push(padInt(yearDay, 3));
        break;
      case Std.Hour:
        out.push(padInt(t.hour, 2));
        break;
      case Std.Hour12:
        out.push(String(hour12));
        break;
      case Std.ZeroHour12:
        out.push(padInt(hour12, 2));
        break;
      case Std.Minute:
        out.push(String(t.minute));
        break;
      case Std.ZeroMinute:
        out.push(padInt(t.minute, 2));
        break;
      case Std.Second:
        out.push(String(t.second));
        break;
      case Std.ZeroSecond:
        out.push(padInt(t.second, 2));
        break;
      case Std.PM:
        out.push(t.hour >= 12 ? 'PM' : 'AM');
        break;
      case Std.pm:
        out.push(t.hour >= 12 ? 'pm' : 'am');
        break;
      case Std.TZ:
        if (t.zoneName !== '') out.push(t.zoneName);
        else out.push(formatOffset(t.offset, false, true, false));
        break;
      case Std.FracSecond0:
      case Std.FracSecond9:
        out.push(formatNanos(t.nanosecond, chunk.digits, chunk.separator, std === Std.FracSecond9));
        break;
      default:
        if (NUM_TZ.has(std)) {
          // Go's "Z" variants write UTC as "Z".
          if (t.offset === 0 && ISO_TZ.has(std)) {
            out.push('Z');
            break;
          }
          const colon = std === Std.ISO8601ColonTZ || std === Std.NumColonTZ || std === Std.ISO8601ColonSecondsTZ || std === Std.NumColonSecondsTZ;
          const short = std === Std.NumShortTZ || std === Std.ISO8601ShortTZ;
          const seconds = std === Std.ISO8601SecondsTZ || std === Std.NumSecondsTz || std === Std.NumColonSecondsTZ || std === Std.ISO8601ColonSecondsTZ;
          out.push(formatOffset(t.offset, colon, !short, seconds));
        }
    }
  }
  return out.join('');
}

function formatOffset(offset: number, colon: boolean, minutes: boolean, seconds: boolean): string {
  const abs = Math.abs(offset);
  const zone = Math.trunc(abs / 60);
  let text = `${offset < 0 ? '-' : '+'}${padInt(Math.trunc(zone / 60), 2)}`;
  if (minutes) text += `${colon ? ':' : ''}${padInt(zone % 60, 2)}`;
  if (seconds) text += `${colon ? ':' : ''}${padInt(abs % 60, 2)}`;
  return text;
}

/** Go's appendNano: `digits` digits of the fraction; the 9 form trims trailing zeros (and the separator). */
function formatNanos(nanos: number, digits: number, separator: string, trim: boolean): string {
  if (trim && (digits === 0 || nanos === 0)) return '';
  let text = `${separator}${padInt(nanos, 9).slice(0, digits)}`;
  if (trim) text = text.replace(/0+$/, '').replace(new RegExp(`\\${separator}$`), '');
  return text;
}
