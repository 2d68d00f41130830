/**
 * Zone abbreviations ("IST", "CET", "+04") as Go prints them for time.format's "MST" element. Go
 * reads them from the tz database's TZif files (RFC 8536) under /usr/share/zoneinfo, so on the
 * same host OPA prints what these files say. ICU, which gives every offset here, has English names
 * only for some zones; so the offset stays ICU's and the name is the TZif file's for that instant,
 * falling back to ICU's name when the host has no tz database files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where Go's time.LoadLocation looks on Unix, in its order (before its embedded copy). */
const ZONEINFO_DIRS = ['/usr/share/zoneinfo/', '/usr/share/lib/zoneinfo/', '/usr/lib/locale/TZ/', '/etc/zoneinfo/'];

interface LocalTimeType {
  readonly offset: number;
  readonly isDst: boolean;
  readonly name: string;
}

/** A TZif file's transitions and, for instants after the last one, the names of its footer rule. */
interface ZoneInfo {
  readonly transitions: readonly number[];
  readonly typeOfTransition: readonly number[];
  readonly types: readonly LocalTimeType[];
  readonly footer: readonly { name: string; offset: number }[];
}

/** Reads one TZif data block (version 1 with 4-byte times, later versions with 8-byte ones). */
function readBlock(data: Buffer, at: number, timeSize: 4 | 8): { info: Omit<ZoneInfo, 'footer'>; end: number } {
  if (data.toString('latin1', at, at + 4) !== 'TZif') throw new Error('not a TZif file');
  const [isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt] = [0, 1, 2, 3, 4, 5].map((i) => data.readUInt32BE(at + 20 + 4 * i)) as [number, number, number, number, number, number];
  let p = at + 44;
  const transitions: number[] = [];
  for (let i = 0; i < timecnt; i++, p += timeSize) transitions.push(timeSize === 4 ? data.readInt32BE(p) : Number(data.readBigInt64BE(p)));
  const typeOfTransition = [...data.subarray(p, p + timecnt)];
  p += timecnt;
  const rawTypes: { offset: number; isDst: boolean; index: number }[] = [];
  for (let i = 0; i < typecnt; i++, p += 6) rawTypes.push({ offset: data.readInt32BE(p), isDst: data[p + 4] === 1, index: data[p + 5] ?? 0 });
  const chars = data.subarray(p, p + charcnt);
  p += charcnt;
  const types = rawTypes.map((t) => {
    const end = chars.indexOf(0, t.index);
    return { offset: t.offset, isDst: t.isDst, name: chars.toString('latin1', t.index, end < 0 ? chars.length : end) };
  });
  const end = p + leapcnt * (timeSize + 4) + isstdcnt + isutcnt;
  return { info: { transitions, typeOfTransition, types }, end };
}

/** The std and dst names and offsets of a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3", "<+04>-4"). */
function footerNames(rule: string): { name: string; offset: number }[] {
  const m = /^(<[^>]*>|[A-Za-z]+)([+-]?\d+(?::\d+){0,2})(?:(<[^>]*>|[A-Za-z]+)([+-]?\d+(?::\d+){0,2})?)?/.exec(rule);
  if (!m) return [];
  const name = (text: string): string => text.replace(/^<|>$/g, '');
  // POSIX offsets are west of UTC: "EST5" is five hours behind.
  const seconds = (text: string): number => {
    const [h = 0, mi = 0, s = 0] = text.replace(/^[+-]/, '').split(':').map(Number);
    return (text.startsWith('-') ? 1 : -1) * (h * 3600 + mi * 60 + s);
  };
  const std = { name: name(m[1] as string), offset: seconds(m[2] as string) };
  if (m[3] === undefined) return [std];
  return [std, { name: name(m[3]), offset: m[4] === undefined ? std.offset + 3600 : seconds(m[4]) }];
}

function parseTzif(data: Buffer): ZoneInfo {
  const v1 = readBlock(data, 0, 4);
  if (data[4] === 0) return { ...v1.info, footer: [] };
  const v2 = readBlock(data, v1.end, 8);
  const footerEnd = data.indexOf(0x0a, v2.end + 1);
  const footer = data[v2.end] === 0x0a && footerEnd > v2.end ? footerNames(data.toString('latin1', v2.end + 1, footerEnd)) : [];
  return { ...v2.info, footer };
}

const zoneInfos = new Map<string, ZoneInfo | undefined>();

function zoneInfo(zoneName: string): ZoneInfo | undefined {
  if (zoneInfos.has(zoneName)) return zoneInfos.get(zoneName);
  let info: ZoneInfo | undefined;
  // Zone names are checked against Go's list before they get here; ".." is refused regardless.
  if (!zoneName.split('/').includes('..')) {
    for (const dir of ZONEINFO_DIRS) {
      try {
        info = parseTzif(readFileSync(join(dir, zoneName)));
        break;
      } catch {
        // Not there, or not a TZif file: try the next place, as Go does.
      }
    }
  }
  zoneInfos.set(zoneName, info);
  return info;
}

/**
 * The abbreviation Go's tz database gives `zoneName` at an instant with the given offset (seconds
 * east of UTC), as Go's Location.lookup: the type of the last transition at or before it, the
 * footer rule's name for that offset after the last transition. Undefined without a TZif file.
 */
export function tzdataAbbreviation(zoneName: string, epochSeconds: number, offset: number): string | undefined {
  const info = zoneInfo(zoneName);
  if (!info || info.types.length === 0) return undefined;
  const { transitions, typeOfTransition, types, footer } = info;
  if (transitions.length === 0 || epochSeconds < (transitions[0] as number)) {
    return (types.find((t) => !t.isDst) ?? types[0])?.name;
  }
  let lo = 0;
  let hi = transitions.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (epochSeconds < (transitions[mid] as number)) hi = mid;
    else lo = mid;
  }
  if (lo === transitions.length - 1 && footer.length > 0) {
    return (footer.find((f) => f.offset === offset) ?? footer[0])?.name;
  }
  return types[typeOfTransition[lo] ?? 0]?.name;
}
