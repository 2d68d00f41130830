/**
 * Go's reference-time layouts ("2006-01-02T15:04:05Z07:00"), as time.format and time.parse_ns
 * read them: the layout lexer of Go's time/format.go (nextStdChunk) and the names and element
 * kinds both directions share. Formatting is go-time-format.ts, parsing go-time-parse.ts; with
 * Go's error messages, so a layout means the same here as in OPA.
 */

/** The kinds of layout element, as Go's std* constants. */
export enum Std {
  None,
  LongMonth,
  Month,
  NumMonth,
  ZeroMonth,
  LongWeekDay,
  WeekDay,
  Day,
  UnderDay,
  ZeroDay,
  UnderYearDay,
  ZeroYearDay,
  Hour,
  Hour12,
  ZeroHour12,
  Minute,
  ZeroMinute,
  Second,
  ZeroSecond,
  LongYear,
  Year,
  PM,
  pm,
  TZ,
  ISO8601TZ,
  ISO8601SecondsTZ,
  ISO8601ShortTZ,
  ISO8601ColonTZ,
  ISO8601ColonSecondsTZ,
  NumTZ,
  NumSecondsTz,
  NumShortTZ,
  NumColonTZ,
  NumColonSecondsTZ,
  FracSecond0,
  FracSecond9,
}

/** One layout element: its kind, and for fractional seconds the digit count and separator. */
export interface Chunk {
  readonly prefix: string;
  readonly std: Std;
  readonly element: string;
  readonly suffix: string;
  readonly digits: number;
  readonly separator: string;
}

const ZERO_STD: readonly Std[] = [Std.ZeroMonth, Std.ZeroDay, Std.ZeroHour12, Std.ZeroMinute, Std.ZeroSecond, Std.Year];
/** Month names as Go writes them ("January"). */
export const LONG_MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
/** Weekday names as Go writes them, Sunday first. */
export const LONG_DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
/** Three-letter month names ("Jan"). */
export const SHORT_MONTHS = LONG_MONTHS.map((m) => m.slice(0, 3));
/** Three-letter weekday names ("Sun"). */
export const SHORT_DAYS = LONG_DAYS.map((d) => d.slice(0, 3));

/** Whether `s` has an ASCII digit at index `i`. */
export const isDigitAt = (s: string, i: number): boolean => i < s.length && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57;
const startsWithLowerCase = (s: string): boolean => s.length > 0 && s[0]! >= 'a' && s[0]! <= 'z';

/** Go's nextStdChunk: the text before the first layout element, the element, and the rest. */
export function nextStdChunk(layout: string): Chunk {
  const at = (i: number, std: Std, length: number, literalPrefix = 0): Chunk => ({
    prefix: layout.slice(0, i + literalPrefix),
    std,
    element: layout.slice(i + literalPrefix, i + length),
    suffix: layout.slice(i + length),
    digits: 0,
    separator: '.',
  });
  const has = (i: number, text: string): boolean => layout.startsWith(text, i);
  for (let i = 0; i < layout.length; i++) {
    switch (layout[i]) {
      case 'J':
        if (has(i, 'Jan')) {
          if (has(i, 'January')) return at(i, Std.LongMonth, 7);
          if (!startsWithLowerCase(layout.slice(i + 3))) return at(i, Std.Month, 3);
        }
        break;
      case 'M':
        if (has(i, 'Mon')) {
          if (has(i, 'Monday')) return at(i, Std.LongWeekDay, 6);
          if (!startsWithLowerCase(layout.slice(i + 3))) return at(i, Std.WeekDay, 3);
        }
        if (has(i, 'MST')) return at(i, Std.TZ, 3);
        break;
      case '0':
        if (i + 1 < layout.length && layout[i + 1]! >= '1' && layout[i + 1]! <= '6') return at(i, ZERO_STD[Number(layout[i + 1]) - 1] as Std, 2);
        if (has(i, '002')) return at(i, Std.ZeroYearDay, 3);
        break;
      case '1':
        if (has(i, '15')) return at(i, Std.Hour, 2);
        return at(i, Std.NumMonth, 1);
      case '2':
        if (has(i, '2006')) return at(i, Std.LongYear, 4);
        return at(i, Std.Day, 1);
      case '_':
        if (has(i, '_2')) {
          // "_2006" is a literal "_" followed by the long year.
          if (has(i + 1, '2006')) return at(i, Std.LongYear, 5, 1);
          return at(i, Std.UnderDay, 2);
        }
        if (has(i, '__2')) return at(i, Std.UnderYearDay, 3);
        break;
      case '3':
        return at(i, Std.Hour12, 1);
      case '4':
        return at(i, Std.Minute, 1);
      case '5':
        return at(i, Std.Second, 1);
      case 'P':
        if (has(i, 'PM')) return at(i, Std.PM, 2);
        break;
      case 'p':
        if (has(i, 'pm')) return at(i, Std.pm, 2);
        break;
      case '-':
        if (has(i, '-070000')) return at(i, Std.NumSecondsTz, 7);
        if (has(i, '-07:00:00')) return at(i, Std.NumColonSecondsTZ, 9);
        if (has(i, '-0700')) return at(i, Std.NumTZ, 5);
        if (has(i, '-07:00')) return at(i, Std.NumColonTZ, 6);
        if (has(i, '-07')) return at(i, Std.NumShortTZ, 3);
        break;
      case 'Z':
        if (has(i, 'Z070000')) return at(i, Std.ISO8601SecondsTZ, 7);
        if (has(i, 'Z07:00:00')) return at(i, Std.ISO8601ColonSecondsTZ, 9);
        if (has(i, 'Z0700')) return at(i, Std.ISO8601TZ, 5);
        if (has(i, 'Z07:00')) return at(i, Std.ISO8601ColonTZ, 6);
        if (has(i, 'Z07')) return at(i, Std.ISO8601ShortTZ, 3);
        break;
      case '.':
      case ',': {
        const ch = layout[i + 1];
        if (ch === '0' || ch === '9') {
          let j = i + 1;
          while (j < layout.length && layout[j] === ch) j++;
          // Only a fractional second if the run of equal digits ends the number.
          if (!isDigitAt(layout, j)) {
            return { ...at(i, ch === '0' ? Std.FracSecond0 : Std.FracSecond9, j - i), digits: j - (i + 1), separator: layout[i] as string };
          }
        }
        break;
      }
      default:
        break;
    }
  }
  return { prefix: layout, std: Std.None, element: '', suffix: '', digits: 0, separator: '.' };
}

/** The zone elements that write "Z" for UTC (ISO 8601). */
export const ISO_TZ = new Set([Std.ISO8601TZ, Std.ISO8601ColonTZ, Std.ISO8601SecondsTZ, Std.ISO8601ShortTZ, Std.ISO8601ColonSecondsTZ]);
/** Every numeric zone element. */
export const NUM_TZ = new Set([...ISO_TZ, Std.NumTZ, Std.NumColonTZ, Std.NumSecondsTz, Std.NumShortTZ, Std.NumColonSecondsTZ]);
