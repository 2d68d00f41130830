/**
 * Identifiers and bank numbers: US social security numbers, payment card numbers and IBANs.
 */
import { before, CARD_CONTEXT, IDENTIFIER_CONTEXT, nearby, SSN_CONTEXT } from './context.js';
import type { Detector, Emit, Facts } from './detector.js';
import { ibanChecksumValid, isDigitCode, isWordCode, luhn } from './validators.js';

// ---------------------------------------------------------------------------------------------
// US SSN

/**
 * Published numbers that are not anyone's SSN: 078-05-1120 (the Woolworth wallet card), 219-09-9999
 * (an SSA advertising sample) and 123-45-6789 (the placeholder of forms and tutorials; flagging it
 * would make every example document a finding).
 */
const PUBLISHED_SSNS = new Set(['078051120', '219099999', '123456789']);

function validSsn(area: string, group: string, serial: string): boolean {
  if (area === '000' || area === '666' || area.startsWith('9')) return false;
  if (group === '00' || serial === '0000') return false;
  return !PUBLISHED_SSNS.has(area + group + serial);
}

const SSN_SEPARATED = /(?<![\w\-.\/:#$@+])(\d{3})([\- ])(\d{2})\2(\d{4})(?![\w@]|[.\/:]\d|-\w)/g;
const SSN_BARE = /(?<![\w\-.\/:#$@+])(\d{3})(\d{2})(\d{4})(?![\w@]|[.\/:]\d|-\w)/g;

/** US SSNs: `AAA-GG-SSSS` or `AAA GG SSSS` unless an identifier word is near, 9 bare digits only next to an SSN word. */
export const ssnDetector: Detector = {
  priority: 7,
  gate: (_text, facts) => facts.hasDigit,
  find(text, facts, emit) {
    SSN_SEPARATED.lastIndex = 0;
    for (let m = SSN_SEPARATED.exec(text); m !== null; m = SSN_SEPARATED.exec(text)) {
      const end = m.index + m[0].length;
      if (!validSsn(m[1] as string, m[3] as string, m[4] as string)) continue;
      if (m[2] === ' ' && (/\d $/.test(text.slice(Math.max(0, m.index - 2), m.index)) || /^ \d/.test(text.slice(end, end + 2)))) continue;
      const ssnWords = nearby(text, m.index, end, facts, SSN_CONTEXT, 48, 24);
      if (!ssnWords && before(text, m.index, facts, IDENTIFIER_CONTEXT, 32)) continue;
      emit('us_ssn', m.index, end);
    }
    SSN_BARE.lastIndex = 0;
    for (let m = SSN_BARE.exec(text); m !== null; m = SSN_BARE.exec(text)) {
      const end = m.index + m[0].length;
      if (!validSsn(m[1] as string, m[2] as string, m[3] as string)) continue;
      if (nearby(text, m.index, end, facts, SSN_CONTEXT, 48, 24)) emit('us_ssn', m.index, end);
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Payment cards

/** The lengths an issuer's numbers can have, from the leading digits (IIN ranges). */
function issuerLengths(d: string): readonly number[] | undefined {
  const p2 = Number(d.slice(0, 2));
  const p3 = Number(d.slice(0, 3));
  const p4 = Number(d.slice(0, 4));
  if (d.startsWith('4')) return [13, 16, 19]; // Visa
  if (p2 === 34 || p2 === 37) return [15]; // American Express
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return [16]; // Mastercard
  if (p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65) return [16, 17, 18, 19]; // Discover
  if (p4 >= 3528 && p4 <= 3589) return [16, 17, 18, 19]; // JCB
  if (p2 === 36 || p2 === 38 || (p3 >= 300 && p3 <= 305)) return [14, 15, 16, 17, 18, 19]; // Diners Club
  if (p2 === 62) return [16, 17, 18, 19]; // UnionPay
  return undefined;
}

/** How people and card printers group digits; any other grouping is some other identifier. */
const CARD_GROUPINGS = new Set(['4,4,4,4', '4,6,5', '4,6,4', '4,4,5', '4,3,3,3', '4,4,4,4,1', '4,4,4,4,2', '4,4,4,4,3']);

/**
 * A 13-, 14- or 15-digit number typed in fours whatever the issuer prints (an Amex as
 * `3782 8224 6310 005`, a 13-digit Visa as `4222 2222 2222 2`). No card is printed like this, and
 * many other references are, so these need a card word nearby, as a contiguous run does.
 */
const TYPED_IN_FOURS = new Set(['4,4,4,1', '4,4,4,2', '4,4,4,3']);

/**
 * A country code (`+49 `) or a bracketed trunk prefix (`(0) `) right before digits typed in fours
 * makes them a phone number, even on a card issuer's hotline page.
 */
const PHONE_PREFIX_BEFORE = /(?:\+\d{1,3}|\(\d{1,4}\))[ \-]?$/;

/** Digit groups joined by single spaces or dashes; windows of them are tried in `findCards`. */
const DIGIT_GROUPS = /(?<![\w\-.\/+,$])\d{1,19}(?:[ \-]\d{1,19}){0,23}/g;

const MAX_GROUPS = 24;
const GROUP_BEFORE = /(?:^|[^A-Za-z0-9])(?=[A-Za-z]*\d)[A-Za-z0-9]{4} $/;
const GROUP_AFTER = /^ (?=[A-Za-z]*\d)[A-Za-z0-9]{4}(?![A-Za-z0-9])/;

/**
 * Card numbers: 13–19 digits whose issuer prefix allows that length, with a valid Luhn check
 * digit, and either a conventional grouping (4-4-4-4, 4-6-5, 4-6-4, …, one kind of separator) or,
 * for a contiguous run or a 13–15-digit number typed in fours (4-4-4-1 to 4-4-4-3), a card word
 * within 64 characters before or 32 after (or in the member name). Luhn alone passes one random
 * digit string in ten, so order numbers need the word.
 */
function findCards(text: string, facts: Facts, emit: Emit): void {
  DIGIT_GROUPS.lastIndex = 0;
  let acceptedEnd = 0;
  for (let m = DIGIT_GROUPS.exec(text); m !== null; m = DIGIT_GROUPS.exec(text)) {
    const run = m[0];
    if (run.length < 13) continue; // fewer than 13 digits
    const starts: number[] = [];
    const ends: number[] = [];
    for (let i = 0; i < run.length; ) {
      const s = i;
      while (i < run.length && isDigitCode(run.charCodeAt(i))) i++;
      starts.push(m.index + s);
      ends.push(m.index + i);
      i++; // the separator
    }
    for (let i = 0; i < starts.length; i++) {
      if ((starts[i] as number) < acceptedEnd) continue;
      if (i > 0 && text[ends[i - 1] as number] !== ' ') continue;
      let digits = 0;
      for (let j = i; j < starts.length && j < i + 5; j++) {
        digits += (ends[j] as number) - (starts[j] as number);
        if (digits > 19) break;
        // One kind of separator inside a number, checked at every group, not only once 13 digits are in.
        if (j > i && text[ends[j - 1] as number] !== text[ends[i] as number]) break;
        if (digits < 13) continue;
        if (j < starts.length - 1 && text[ends[j] as number] !== ' ') continue;
        const start = starts[i] as number;
        const end = ends[j] as number;
        if (j === starts.length - 1) {
          const next = text.charCodeAt(end);
          if (isWordCode(next)) continue; // a longer digit run, or digits glued to letters
          if ((text[end] === '.' || text[end] === '/' || text[end] === ',') && isDigitCode(text.charCodeAt(end + 1))) continue;
        }
        const lengths: number[] = [];
        for (let g = i; g <= j; g++) lengths.push((ends[g] as number) - (starts[g] as number));
        const grouping = lengths.join(',');
        const printed = j > i && CARD_GROUPINGS.has(grouping);
        if (j > i && !printed && !TYPED_IN_FOURS.has(grouping)) continue;
        // A neighbouring 4-character group with a digit (`1111`, `DE80`) makes the window part of
        // a longer grouped identifier: a table of numbers, an IBAN with a bad checksum.
        if (j > i && (GROUP_BEFORE.test(text.slice(Math.max(0, start - 6), start)) || GROUP_AFTER.test(text.slice(end, end + 6)))) continue;
        const number = text.slice(start, end).replace(/[ \-]/g, '');
        if (!issuerLengths(number)?.includes(number.length)) continue;
        if (!luhn(number)) continue;
        // Luhn passes one random digit string in ten: a contiguous run, or one typed in fours
        // that no issuer prints, needs a card word nearby (and the latter no phone prefix).
        if (!printed) {
          if (j > i && PHONE_PREFIX_BEFORE.test(text.slice(Math.max(0, start - 7), start))) continue;
          if (!nearby(text, start, end, facts, CARD_CONTEXT, 64, 32)) continue;
        }
        emit('payment_card', start, end);
        acceptedEnd = end;
        i = j;
        break;
      }
    }
    // A run cut at MAX_GROUPS resumes a few groups back so no 5-group window is lost at the cut.
    if (starts.length === MAX_GROUPS) DIGIT_GROUPS.lastIndex = starts[MAX_GROUPS - 4] as number;
  }
}

/** Payment card numbers (see findCards). */
export const cardDetector: Detector = { priority: 5, gate: (_text, facts) => facts.hasDigit, find: findCards };

// ---------------------------------------------------------------------------------------------
// IBAN

/**
 * BBAN shape per country (n: digits, a: letters, c: letters or digits), from the SWIFT IBAN
 * registry. The IBAN length is 4 + the BBAN length.
 */
const IBAN_FORMATS: Readonly<Record<string, string>> = {
  AD: '8n12c', AE: '3n16n', AL: '8n16c', AT: '16n', AZ: '4a20c', BA: '16n', BE: '12n', BG: '4a6n8c', BH: '4a14c',
  BR: '23n1a1c', BY: '4c4n16c', CH: '5n12c', CR: '18n', CY: '8n16c', CZ: '20n', DE: '18n', DK: '14n', DO: '4c20n',
  EE: '16n', EG: '25n', ES: '20n', FI: '14n', FO: '14n', FR: '10n11c2n', GB: '4a14n', GE: '2a16n', GI: '4a15c',
  GL: '14n', GR: '7n16c', GT: '4c20c', HR: '17n', HU: '24n', IE: '4a14n', IL: '19n', IQ: '4a15n', IS: '22n',
  IT: '1a10n12c', JO: '4a4n18c', KW: '4a22c', KZ: '3n13c', LB: '4n20c', LC: '4a24c', LI: '5n12c', LT: '16n',
  LU: '3n13c', LV: '4a13c', LY: '21n', MC: '10n11c2n', MD: '2c18c', ME: '18n', MK: '3n10c2n', MR: '23n',
  MT: '4a5n18c', MU: '4a19n3a', NL: '4a10n', NO: '11n', PK: '4a16c', PL: '24n', PS: '4a21c', PT: '21n', QA: '4a21c',
  RO: '4a16c', RS: '18n', SA: '2n18c', SC: '4a20n3a', SD: '14n', SE: '20n', SI: '15n', SK: '20n', SM: '1a10n12c',
  ST: '21n', SV: '4a20n', TL: '19n', TN: '20n', TR: '5n1n16c', UA: '6n19c', VA: '18n', VG: '4a16n', XK: '16n',
};

const IBAN_SHAPES: ReadonlyMap<string, { length: number; shape: RegExp }> = new Map(
  Object.entries(IBAN_FORMATS).map(([country, format]) => {
    let length = 4;
    let source = '^';
    for (const [, count, kind] of format.matchAll(/(\d+)([anc])/g)) {
      length += Number(count);
      source += `${kind === 'n' ? '[0-9]' : kind === 'a' ? '[A-Z]' : '[A-Z0-9]'}{${count}}`;
    }
    return [country, { length, shape: new RegExp(`${source}$`) }];
  }),
);

const IBAN_START = /(?<![A-Za-z0-9])([A-Z]{2})\d{2}/g;

function isIbanCharCode(code: number): boolean {
  return (code >= 65 && code <= 90) || isDigitCode(code);
}

/** Compact (`DE89370400440532013000`) or printed in groups of four (`DE89 3704 0044 0532 0130 00`). */
function findIbans(text: string, _facts: Facts, emit: Emit): void {
  IBAN_START.lastIndex = 0;
  for (let m = IBAN_START.exec(text); m !== null; m = IBAN_START.exec(text)) {
    const format = IBAN_SHAPES.get(m[1] as string);
    if (format === undefined) continue;
    const spaced = text[m.index + 4] === ' ';
    let compact = m[0];
    let pos = m.index + 4;
    let ok = true;
    while (compact.length < format.length) {
      if (spaced && compact.length % 4 === 0) {
        if (text[pos] !== ' ') {
          ok = false;
          break;
        }
        pos++;
      }
      if (!isIbanCharCode(text.charCodeAt(pos))) {
        ok = false;
        break;
      }
      compact += text[pos];
      pos++;
    }
    if (!ok || /[A-Za-z0-9]/.test(text[pos] ?? '')) continue;
    if (!format.shape.test(compact.slice(4)) || !ibanChecksumValid(compact)) continue;
    emit('iban', m.index, pos);
    IBAN_START.lastIndex = pos;
  }
}

/** IBANs of the registry's countries with a valid checksum (see findIbans). */
export const ibanDetector: Detector = { priority: 4, gate: (_text, facts) => facts.hasDigit, find: findIbans };
