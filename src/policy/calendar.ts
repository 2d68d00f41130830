/**
 * Civil time as Go's time package computes it, for the time.* builtins: calendar arithmetic on
 * the proleptic Gregorian calendar, and time zones from ICU's tz data under Go's zone names.
 */
import { BuiltinError } from './host-builtin.js';
import { tzdataAbbreviation } from './zone-abbreviations.js';

/** Nanoseconds in a second. */
export const NS_PER_SECOND = 1_000_000_000n;
/** Seconds in a day: Go's time, like Unix time, has no leap seconds. */
export const SECONDS_PER_DAY = 86_400;

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic on the proleptic Gregorian calendar, as Go's time package does it. Pure
// arithmetic rather than Date.UTC, which maps years 0-99 to 1900-1999.
// ---------------------------------------------------------------------------------------------

/** A wall-clock reading: date (month 1-12) and time of day, without a zone. */
export interface CivilTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** Days since 1970-01-01 of a date (month 1-12), after H. Hinnant's days_from_civil. */
export function daysFromCivil(year: number, month: number, day: number): number {
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

/** The number of days in a month (1-12) of a year. */
export function daysInMonth(year: number, month: number): number {
  return month === 12 ? 31 : daysFromCivil(year, month + 1, 1) - daysFromCivil(year, month, 1);
}

/** Seconds since the epoch of a civil time read as UTC. */
export function civilSeconds(t: CivilTime): number {
  return daysFromCivil(t.year, t.month, t.day) * SECONDS_PER_DAY + t.hour * 3600 + t.minute * 60 + t.second;
}

function utcCivil(epochSeconds: number): CivilTime {
  const days = Math.floor(epochSeconds / SECONDS_PER_DAY);
  const secondOfDay = epochSeconds - days * SECONDS_PER_DAY;
  return { ...civilFromDays(days), hour: Math.floor(secondOfDay / 3600), minute: Math.floor(secondOfDay / 60) % 60, second: secondOfDay % 60 };
}

/** Splits nanoseconds into whole seconds (floored, as Go's Unix time) and the nanosecond remainder. */
export function splitNs(ns: bigint): { seconds: number; nanos: bigint } {
  const seconds = ns / NS_PER_SECOND - (ns % NS_PER_SECOND < 0n ? 1n : 0n);
  return { seconds: Number(seconds), nanos: ns - seconds * NS_PER_SECOND };
}

// ---------------------------------------------------------------------------------------------
// Time zones: ICU's tz data through Intl, with Go's rules for which names exist.
// ---------------------------------------------------------------------------------------------

/** A zone as OPA's tzTime resolves it: UTC (pure arithmetic) or an ICU-backed named zone. */
export type Zone = { readonly kind: 'utc' } | { readonly kind: 'named'; readonly name: string; readonly formatter: Intl.DateTimeFormat };

/** Coordinated Universal Time, by pure arithmetic. */
export const UTC: Zone = { kind: 'utc' };

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
    zone = { kind: 'named', name, formatter };
    namedZones.set(name, zone);
  }
  return zone;
}

/** OPA's zone names: ""/"UTC" are UTC, "Local" the host's zone, anything else a Go zone name. */
export function zoneFor(name: string): Zone {
  // Go's tz database has a "Factory" zone (offset 0, unknown to ICU).
  if (name === '' || name === 'UTC' || name === 'Factory') return UTC;
  if (name === 'Local') return namedZone(Intl.DateTimeFormat().resolvedOptions().timeZone);
  if (!isGoZoneName(name)) throw new BuiltinError(`unknown time zone "${name.slice(0, 64)}"`);
  return namedZone(name);
}

/** The wall-clock time in `zone` at an instant. */
export function civilAt(zone: Zone, epochSeconds: number): CivilTime {
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
export function zoneOffset(zone: Zone, epochSeconds: number): number {
  return zone.kind === 'utc' ? 0 : civilSeconds(civilAt(zone, epochSeconds)) - epochSeconds;
}

/**
 * The instant of a wall-clock time in `zone` (given as seconds read as UTC), resolved as Go's
 * time.Date does: the offset in effect at that reading, corrected once if it lands in another
 * period, so times in a DST gap or overlap come out as in OPA.
 */
export function instantOf(zone: Zone, localSeconds: number): number {
  const guess = zoneOffset(zone, localSeconds);
  // Go re-reads the offset only when the first one is non-zero (a quirk kept for fidelity).
  return localSeconds - (guess === 0 ? 0 : zoneOffset(zone, localSeconds - guess));
}

const abbreviationFormatters = new Map<string, Intl.DateTimeFormat>();

/** ICU's English short name for the zone, or the offset as the tz database writes unnamed zones ("+0530"). */
function icuAbbreviation(zoneName: string, epochSeconds: number, offset: number): string {
  let formatter = abbreviationFormatters.get(zoneName);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone: zoneName, timeZoneName: 'short' });
    abbreviationFormatters.set(zoneName, formatter);
  }
  const name = formatter.formatToParts(new Date(epochSeconds * 1000)).find((p) => p.type === 'timeZoneName')?.value ?? '';
  if (/^[A-Z]{3,5}$/.test(name)) return name;
  const minutes = Math.abs(offset) / 60;
  const hh = String(Math.floor(minutes / 60)).padStart(2, '0');
  const mm = minutes % 60 === 0 ? '' : String(minutes % 60).padStart(2, '0');
  return `${offset < 0 ? '-' : '+'}${hh}${mm}`;
}

/**
 * The zone's abbreviation at an instant, for Go's "MST" layout element: the host's tz database
 * files, as Go reads them (zone-abbreviations.ts), else ICU's English name where it has one.
 */
export function zoneAbbreviation(zone: Zone, epochSeconds: number): string {
  if (zone.kind === 'utc') return 'UTC';
  const offset = zoneOffset(zone, epochSeconds);
  return tzdataAbbreviation(zone.name, epochSeconds, offset) ?? icuAbbreviation(zone.name, epochSeconds, offset);
}
