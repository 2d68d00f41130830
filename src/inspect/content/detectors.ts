/**
 * Content-safety detectors: where personal data and credentials sit in a piece of text.
 *
 * `detect` returns a type and UTF-16 offsets per match and nothing else: callers never get the
 * matched value back from this module, so it cannot leak into facts, logs or audit records by
 * accident. Every rule here is chosen for precision first (a policy that denies on a finding
 * must not fire on order numbers, GUIDs, timestamps or hashes), then recall; the labelled corpus
 * in test/fixtures/content-corpus.jsonl measures both (`npx tsx bench/detectors.ts`).
 *
 * Linear time: every regex has bounded quantifiers and a left-boundary lookbehind, so a match
 * attempt can only start at the beginning of a run of its characters and costs at most a
 * constant; the procedural parts (card digit groups, IBANs, PEM blocks) advance monotonically.
 * A 1 MB adversarial string is scanned in milliseconds (test/content.test.ts checks this).
 */

/** Every finding type, in a stable order (tables, tests and policies iterate it). */
export const FINDING_TYPES = [
  'email',
  'phone',
  'us_ssn',
  'payment_card',
  'iban',
  'secret.aws_access_key',
  'secret.aws_secret_key',
  'secret.private_key',
  'secret.github_token',
  'secret.gitlab_token',
  'secret.openai_key',
  'secret.anthropic_key',
  'secret.slack_token',
  'secret.slack_webhook',
  'secret.stripe_key',
  'secret.google_api_key',
  'secret.jwt',
  'secret.npm_token',
  'secret.azure_storage_key',
  'secret.huggingface_token',
  'secret.sendgrid_key',
  'secret.pypi_token',
  'secret.digitalocean_token',
  'secret.shopify_token',
] as const;

export type FindingType = (typeof FINDING_TYPES)[number];

const FINDING_TYPE_SET: ReadonlySet<string> = new Set(FINDING_TYPES);

export function isFindingType(value: unknown): value is FindingType {
  return typeof value === 'string' && FINDING_TYPE_SET.has(value);
}

/** One match: its type and where it is. Never the value. */
export interface Match {
  readonly type: FindingType;
  /** UTF-16 offset of the first character. */
  readonly start: number;
  /** UTF-16 offset just past the last character. */
  readonly end: number;
}

export interface DetectOptions {
  /**
   * Text that labels `text` without being part of it, typically the JSON member name that holds
   * it (`card_number`, `ssn`, `awsSecretAccessKey`). It counts as nearby context for the rules
   * that need a keyword (contiguous card numbers, bare 9-digit SSNs, AWS secret keys, Azure
   * storage keys). It is never scanned for matches itself.
   */
  readonly context?: string;
  /** Report only these types. Overlaps are resolved first, over all types. */
  readonly types?: ReadonlySet<FindingType>;
}

interface Candidate extends Match {
  readonly priority: number;
}

type Emit = (type: FindingType, start: number, end: number) => void;

interface Facts {
  readonly hasDigit: boolean;
  readonly context: string;
}

interface Detector {
  /** Lower wins when two matches overlap: a specific secret beats the digits inside it. */
  readonly priority: number;
  /** A cheap necessary condition (a substring test), so most strings skip most regexes. */
  readonly gate: (text: string, facts: Facts) => boolean;
  readonly find: (text: string, facts: Facts, emit: Emit) => void;
}

// ---------------------------------------------------------------------------------------------
// Context keywords

/** Splits camelCase so `cardNumber` and `awsSecretAccessKey` read as words. */
function words(text: string): string {
  return text.replace(/([a-z])([A-Z])/g, '$1 $2');
}

/**
 * True when `keyword` occurs within `before` characters before the match, `after` characters
 * after it, or in the caller's context (the JSON member name).
 */
function nearby(text: string, start: number, end: number, facts: Facts, keyword: RegExp, before: number, after: number): boolean {
  const window = `${words(text.slice(Math.max(0, start - before), start))} | ${words(text.slice(end, end + after))}`;
  return keyword.test(window) || (facts.context !== '' && keyword.test(words(facts.context)));
}

function before(text: string, start: number, facts: Facts, keyword: RegExp, chars: number): boolean {
  return keyword.test(words(text.slice(Math.max(0, start - chars), start))) || (facts.context !== '' && keyword.test(words(facts.context)));
}

/** Any of `patterns` as a whole word (no letter on either side), case-insensitive. */
function anyWord(patterns: readonly string[], extra = ''): RegExp {
  return new RegExp(`(?<![a-z])(?:${patterns.join('|')})(?![a-z])${extra}`, 'i');
}

const CARD_CONTEXT = anyWord([
  'cards?', 'card ?holder', 'card ?num(?:ber)?', 'card ?no', 'visa', 'master ?card', 'amex', 'american express', 'discover',
  'jcb', 'diners(?: club)?', 'union ?pay', 'maestro', 'cc', 'ccn', 'cc ?num(?:ber)?', 'credit', 'debit', 'payment', 'pay',
  'pan', 'cvv2?', 'cvc2?', 'csc', 'exp', 'expiry', 'expires', 'expiration', 'billing', 'checkout', 'charge',
]);

const SSN_CONTEXT = anyWord(['ssns?', 'social security', 'social sec', 'soc\\.? ?sec', 'ss ?#', 'ss ?no', 'ss ?num(?:ber)?']);

/** Words that make a phone- or SSN-shaped number an identifier of something else; also `#` right before it. */
const IDENTIFIER_CONTEXT = anyWord(
  [
    'order', 'invoice', 'inv', 'ref', 'reference', 'tracking', 'account', 'acct', 'po', 'sku', 'serial', 'ticket',
    'case ?(?:no|number|id)', 'confirmation', 'conf', 'booking', 'reservation', 'transaction', 'txn', 'part', 'model', 'item',
    'id', 'version', 'ver', 'build', 'isbn', 'patent', 'policy', 'claim', 'receipt', 'batch', 'lot',
  ],
  '|#\\s?:?\\s?$',
);

const PHONE_CONTEXT = anyWord([
  'phones?', 'ph', 'tel', 'telephone', 'call', 'calling', 'mobile', 'mob', 'cell', 'cellphone', 'caller', 'fax', 'contact',
  'reach', 'text', 'sms', 'whats ?app', 'dial', 'ring', 'hotline', 'helpline', 'landline',
]);

const AWS_SECRET_CONTEXT = /(?:aws|amazon)[^\n]{0,24}secret|secret[\s_\-.]*access[\s_\-.]*key/i;

const AZURE_KEY_CONTEXT = /account[\s_\-.]*key|azure[\s_\-.]*(?:storage|key)|storage[\s_\-.]*(?:account[\s_\-.]*)?key|shared[\s_\-.]*key/i;

// ---------------------------------------------------------------------------------------------
// Helpers

const ZERO = 48;

function isDigitCode(code: number): boolean {
  return code >= ZERO && code <= ZERO + 9;
}

function isWordCode(code: number): boolean {
  return (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95;
}

function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - ZERO;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function hasUpperLowerDigit(value: string): boolean {
  return /[A-Z]/.test(value) && /[a-z]/.test(value) && /[0-9]/.test(value);
}

/** A detector from one or more global regexes, with an optional check on each hit. */
function regexDetector(
  type: FindingType,
  priority: number,
  literals: readonly string[],
  patterns: readonly RegExp[],
  validate?: (value: string, text: string, start: number, end: number, facts: Facts) => boolean,
): Detector {
  return {
    priority,
    gate: (text) => literals.some((literal) => text.includes(literal)),
    find(text, facts, emit) {
      for (const pattern of patterns) {
        pattern.lastIndex = 0;
        for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
          const end = m.index + m[0].length;
          if (validate === undefined || validate(m[0], text, m.index, end, facts)) emit(type, m.index, end);
        }
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Email

/** File extensions that are not TLDs: `icon@2x.png`, `logo@dark.svg` are asset names. */
const NOT_TLDS = new Set([
  'png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'bmp', 'tif', 'tiff', 'avif', 'heic', 'pdf', 'js', 'mjs', 'cjs', 'ts',
  'tsx', 'jsx', 'css', 'scss', 'less', 'json', 'yaml', 'yml', 'toml', 'txt', 'html', 'htm', 'xml', 'lock', 'log', 'map',
  'wasm', 'exe', 'dll', 'zip', 'tar', 'gz', 'tgz', 'csv', 'mp3', 'mp4', 'wav', 'mov',
]);

const URL_USERINFO = /[A-Za-z][A-Za-z0-9+.\-]{0,15}:\/\/(?:[^\s\/@:]{0,64}:)?$/;

const EMAIL =
  /(?<![\w%+\-])[\w%+\-][\w.%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w\-]|\.[A-Za-z0-9])/g;

const emailDetector = regexDetector('email', 6, ['@'], [EMAIL], (value, text, start, end) => {
  const at = value.lastIndexOf('@');
  const domain = value.slice(at + 1);
  const tld = domain.slice(domain.lastIndexOf('.') + 1).toLowerCase();
  if (NOT_TLDS.has(tld)) return false;
  // Retina asset names: `icon@2x.webp`, `sprite@3x.dark`.
  if (/^\d+x\./i.test(domain)) return false;
  // scp-style git remotes: `git@github.com:org/repo.git` names a login, not a mailbox.
  if (text[end] === ':' && /[\w~/.\-]/.test(text[end + 1] ?? '')) return false;
  // URL userinfo (`https://user:pass@host`, a Sentry DSN's key): a login, not a mailbox.
  if (URL_USERINFO.test(text.slice(Math.max(0, start - 80), start))) return false;
  return true;
});

// ---------------------------------------------------------------------------------------------
// Phone

/** `+` and 8–15 digits; each candidate is cut back to its longest valid prefix that ends a digit group. */
const E164_CANDIDATE = /(?<![\w+])\+[1-9][\d\-. ()]{6,28}/g;

/** Separators between digit groups: one of space, dash, dot, with at most one parenthesised group. */
function validE164(candidate: string, openParenBefore: boolean): boolean {
  let digits = 0;
  let inParen = false;
  let parens = 0;
  let parenDigits = 0;
  let closedLeading = !openParenBefore;
  let prev = '+';
  for (let i = 1; i < candidate.length; i++) {
    const c = candidate[i] as string;
    if (c >= '0' && c <= '9') {
      digits++;
      if (inParen) parenDigits++;
    } else if (c === '(') {
      if (inParen || parens > 0 || !isDigitCode(candidate.charCodeAt(i + 1))) return false;
      inParen = true;
      parens++;
    } else if (c === ')') {
      if (inParen) {
        if (parenDigits === 0 || parenDigits > 5) return false;
        inParen = false;
      } else if (!closedLeading && prev >= '0' && prev <= '9') {
        closedLeading = true; // `(+44) 20 7946 0958`
      } else {
        return false;
      }
    } else {
      // space, dash or dot: never two in a row, never right after `(`.
      if (prev === ' ' || prev === '-' || prev === '.' || prev === '(') return false;
    }
    prev = c;
  }
  return !inParen && closedLeading && digits >= 8 && digits <= 15;
}

const phoneE164Detector: Detector = {
  priority: 8,
  gate: (text, facts) => facts.hasDigit && text.includes('+'),
  find(text, _facts, emit) {
    E164_CANDIDATE.lastIndex = 0;
    for (let m = E164_CANDIDATE.exec(text); m !== null; m = E164_CANDIDATE.exec(text)) {
      const candidate = m[0];
      // `+2024-01-15`: an ISO date with a sign, not a phone number.
      if (/^\+\d{4}-\d{2}-\d{2}/.test(candidate)) continue;
      const openParenBefore = text[m.index - 1] === '(';
      let best = -1;
      let leadingParen = false;
      let digits = 0;
      for (let i = 1; i < candidate.length; i++) {
        if (!isDigitCode(candidate.charCodeAt(i))) continue;
        digits++;
        if (digits > 15) break;
        if (digits < 8 || isDigitCode(text.charCodeAt(m.index + i + 1))) continue; // not the end of a digit group
        const prefix = candidate.slice(0, i + 1);
        if (validE164(prefix, false)) {
          best = i + 1;
          leadingParen = false;
        } else if (openParenBefore && validE164(prefix, true)) {
          best = i + 1;
          leadingParen = true; // `(+44) 20 7946 0958`
        }
      }
      if (best < 0) continue;
      const end = m.index + best;
      if (isWordCode(text.charCodeAt(end))) continue;
      // `+37.774929`: a signed decimal (a coordinate, a delta), not a number with one dot in it.
      if (/^\+\d+\.\d+$/.test(candidate.slice(0, best))) continue;
      emit('phone', leadingParen ? m.index - 1 : m.index, end);
      E164_CANDIDATE.lastIndex = end;
    }
  },
};

/**
 * North American numbers with separators: `(415) 555-2671`, `415-555-2671`, `415.555.2671`,
 * `415 555 2671`, optionally after `1-`/`+1 `. The two separators must agree. After an identifier
 * word (`order`, `invoice`, `ref`, `#`…) the number is one unless a phone word is near too. A bare
 * 10-digit run needs a phone word (`PHONE_IF_CONTEXT`): on its own it is an order or account number.
 */
const NANP =
  /(?<![\w+\-.\/:#$@])(?:\+?1[ .\-]?)?(?:\(([2-9][0-8]\d)\) ?([2-9]\d{2})[ .\-](\d{4})|([2-9][0-8]\d)([ .\-])([2-9]\d{2})\5(\d{4}))(?![\w@]|[.\/:]\d|-\w)/g;

const phoneNanpDetector: Detector = {
  priority: 8,
  gate: (_text, facts) => facts.hasDigit,
  find(text, facts, emit) {
    NANP.lastIndex = 0;
    for (let m = NANP.exec(text); m !== null; m = NANP.exec(text)) {
      const area = (m[1] ?? m[4]) as string;
      const exchange = (m[2] ?? m[6]) as string;
      const end = m.index + m[0].length;
      // N11 codes (411, 911) are service codes, never area codes or exchanges.
      if (area.endsWith('11') || exchange.endsWith('11')) continue;
      // A space-separated group inside a longer run of numbers (`12 415 555 2671 9`) is a table row.
      if (m[5] === ' ' && (/\d $/.test(text.slice(Math.max(0, m.index - 2), m.index)) || /^ \d/.test(text.slice(end, end + 2)))) continue;
      if (before(text, m.index, facts, IDENTIFIER_CONTEXT, 32) && !nearby(text, m.index, end, facts, PHONE_CONTEXT, 48, 16)) continue;
      emit('phone', m.index, end);
    }
  },
};

/**
 * Shapes that are phone numbers only when a phone word is near (`call`, `tel`, `mobile`…): a
 * local 7-digit number (`555-0142`), 10 bare NANP digits (`2125550143`) and national formats
 * with a trunk 0 (`07700 900123`, `030 12345678`). Without the word they are too often other
 * numbers.
 */
const PHONE_IF_CONTEXT = [
  /(?<![\w+\-.\/:#$@])[2-9]\d{2}-\d{4}(?![\w@]|[.\/:]\d|-\w)/g,
  /(?<![\w+\-.\/:#$@])1?[2-9][0-8]\d[2-9]\d{6}(?![\w@]|[.\/:]\d|-\w)/g,
  /(?<![\w+\-.\/:#$@])0(?:\d{1,4}(?:[ \-]\d{2,8}){1,3}|\d{9,10})(?![\w@]|[.\/:]\d|-\w)/g,
];

const phoneContextDetector: Detector = {
  priority: 8,
  gate: (_text, facts) => facts.hasDigit,
  find(text, facts, emit) {
    for (const pattern of PHONE_IF_CONTEXT) {
      pattern.lastIndex = 0;
      for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
        const end = m.index + m[0].length;
        const digits = m[0].replace(/\D/g, '').length;
        if (m[0].startsWith('0') && (digits < 10 || digits > 11)) continue;
        if (nearby(text, m.index, end, facts, PHONE_CONTEXT, 32, 16)) emit('phone', m.index, end);
      }
    }
  },
};

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

const ssnDetector: Detector = {
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

/** Digit groups joined by single spaces or dashes; windows of them are tried in `findCards`. */
const DIGIT_GROUPS = /(?<![\w\-.\/+,$])\d{1,19}(?:[ \-]\d{1,19}){0,23}/g;

const MAX_GROUPS = 24;
const GROUP_BEFORE = /(?:^|[^A-Za-z0-9])(?=[A-Za-z]*\d)[A-Za-z0-9]{4} $/;
const GROUP_AFTER = /^ (?=[A-Za-z]*\d)[A-Za-z0-9]{4}(?![A-Za-z0-9])/;

/**
 * Card numbers: 13–19 digits whose issuer prefix allows that length, with a valid Luhn check
 * digit, and either a conventional grouping (4-4-4-4, 4-6-5, 4-6-4, …, one kind of separator) or,
 * for a contiguous run, a card word within 64 characters before or 32 after (or in the member
 * name). Luhn alone passes one random digit string in ten, so order numbers need the word.
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
        if (digits < 13) continue;
        if (j > i && text[ends[j - 1] as number] !== text[ends[i] as number]) break; // one kind of separator inside a number
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
        if (j > i && !CARD_GROUPINGS.has(lengths.join(','))) continue;
        // A neighbouring 4-character group with a digit (`1111`, `DE80`) makes the window part of
        // a longer grouped identifier: a table of numbers, an IBAN with a bad checksum.
        if (j > i && (GROUP_BEFORE.test(text.slice(Math.max(0, start - 6), start)) || GROUP_AFTER.test(text.slice(end, end + 6)))) continue;
        const number = text.slice(start, end).replace(/[ \-]/g, '');
        if (!issuerLengths(number)?.includes(number.length)) continue;
        if (!luhn(number)) continue;
        // Luhn passes one random digit string in ten: a contiguous run needs a card word nearby.
        if (j === i && !nearby(text, start, end, facts, CARD_CONTEXT, 64, 32)) continue;
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

const cardDetector: Detector = { priority: 5, gate: (_text, facts) => facts.hasDigit, find: findCards };

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

function ibanChecksumValid(iban: string): boolean {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    const value = code >= 65 ? code - 55 : code - ZERO;
    remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97;
  }
  return remainder === 1;
}

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

const ibanDetector: Detector = { priority: 4, gate: (_text, facts) => facts.hasDigit, find: findIbans };

// ---------------------------------------------------------------------------------------------
// Private keys (PEM and PGP armour)

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /^-----END (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----/;
/** Characters of a PEM body, its `Proc-Type:`/`DEK-Info:` headers and JSON-escaped newlines. */
const PEM_NOT_BODY = /[^A-Za-z0-9+\/=\s\\:,\-._()]/g;
const MAX_PEM_CHARS = 64 * 1024;

/** Base64, `=`, line breaks, and the backslash of an escaped `\n` (a key pasted from JSON or .env). */
function isKeyMaterialCode(code: number): boolean {
  return (
    (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) ||
    code === 43 || code === 47 || code === 61 || code === 92 || code === 10 || code === 13
  );
}

const MIN_KEY_MATERIAL = 40;

function countKeyMaterial(text: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (isKeyMaterialCode(code) && code !== 10 && code !== 13 && code !== 92) n++;
  }
  return n;
}

/**
 * The whole block from BEGIN to END. Without an END line (a truncated paste), the BEGIN line and
 * the key material that follows it. The next END marker and the next non-PEM character are
 * searched forward once and reused, so many BEGIN lines cost one pass.
 */
function findPrivateKeys(text: string, _facts: Facts, emit: Emit): void {
  PEM_BEGIN.lastIndex = 0;
  let endMarker = -2;
  let notBody = -2;
  for (let m = PEM_BEGIN.exec(text); m !== null; m = PEM_BEGIN.exec(text)) {
    const headerEnd = m.index + m[0].length;
    if (endMarker !== -1 && endMarker < headerEnd) endMarker = text.indexOf('-----END ', headerEnd);
    if (notBody !== -1 && notBody < headerEnd) {
      PEM_NOT_BODY.lastIndex = headerEnd;
      notBody = PEM_NOT_BODY.exec(text)?.index ?? -1;
    }
    let end = -1;
    if (endMarker >= 0 && endMarker - headerEnd <= MAX_PEM_CHARS && (notBody === -1 || notBody > endMarker)) {
      const tail = PEM_END.exec(text.slice(endMarker, endMarker + 80));
      if (tail !== null) end = endMarker + tail[0].length;
    }
    if (end < 0) {
      end = headerEnd;
      const limit = Math.min(text.length, headerEnd + MAX_PEM_CHARS);
      while (end < limit && isKeyMaterialCode(text.charCodeAt(end))) end++;
      while (end > headerEnd && /[\r\n\\]/.test(text[end - 1] as string)) end--;
    }
    // A BEGIN line with no key after it (`indexOf("-----BEGIN PRIVATE KEY-----")`, a `...`
    // placeholder in docs) is not a secret.
    if (countKeyMaterial(text, headerEnd, end) >= MIN_KEY_MATERIAL) emit('secret.private_key', m.index, end);
    PEM_BEGIN.lastIndex = end;
  }
}

const privateKeyDetector: Detector = { priority: 0, gate: (text) => text.includes('-----BEGIN '), find: findPrivateKeys };

// ---------------------------------------------------------------------------------------------
// JWT

const JWT = /(?<![\w\-.])eyJ[\w\-]{8,2048}\.[\w\-]{0,16384}\.[\w\-]{0,16384}(?:\.[\w\-]{1,16384}\.[\w\-]{1,4096})?(?![\w\-]|\.[\w\-])/g;

/** Three parts (JWS) or five (JWE), and a header that is a JSON object with an `alg`. */
function validJwt(value: string): boolean {
  const parts = value.split('.');
  if (parts.length !== 3 && parts.length !== 5) return false;
  if (parts.length === 3 && parts[1] === '') return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0] as string, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Token formats with a fixed prefix

const SECRET_PRIORITY = 2;

const secretDetectors: readonly Detector[] = [
  regexDetector('secret.aws_access_key', SECRET_PRIORITY, ['AKIA', 'ASIA', 'ABIA', 'ACCA'], [
    /(?<![A-Za-z0-9])A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])/g,
  ]),
  regexDetector(
    'secret.github_token',
    SECRET_PRIORITY,
    ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_'],
    [/(?<![\w\-])gh[pousr]_[A-Za-z0-9]{36,251}(?![\w\-])/g, /(?<![\w\-])github_pat_\w{50,251}(?![\w\-])/g],
  ),
  regexDetector('secret.gitlab_token', SECRET_PRIORITY, ['glpat-', 'gldt-', 'glrt-', 'glptt-', 'glcbt-', 'gloas-'], [
    /(?<![\w\-])(?:glpat|gldt|glrt|glptt|glcbt|gloas)-[\w\-]{20,64}(?:\.[\w\-]{1,32}){0,2}(?![\w\-])/g,
  ]),
  regexDetector(
    'secret.openai_key',
    SECRET_PRIORITY,
    ['sk-'],
    [/(?<![\w\-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[\w\-]{32,256}(?![\w\-])/g],
    (value) => hasUpperLowerDigit(value.slice(3)),
  ),
  regexDetector('secret.anthropic_key', SECRET_PRIORITY, ['sk-ant-'], [/(?<![\w\-])sk-ant-[\w\-]{32,256}(?![\w\-])/g], (value) =>
    hasUpperLowerDigit(value.slice(7)),
  ),
  regexDetector('secret.slack_token', SECRET_PRIORITY, ['xox'], [
    /(?<![\w\-])xox[abposr]-(?:\d{1,2}-)?\d{6,16}-[A-Za-z0-9\-]{6,240}(?![\w\-])/g,
    /(?<![\w\-])xoxe(?:\.xox[bp])?-1-[A-Za-z0-9\-]{40,300}(?![\w\-])/g,
  ]),
  regexDetector('secret.slack_webhook', SECRET_PRIORITY, ['hooks.slack.com'], [
    /(?<![\w\-])(?:https?:\/\/)?hooks\.slack\.com\/services\/T[A-Z0-9]{6,12}\/B[A-Z0-9]{6,12}\/[A-Za-z0-9]{20,32}(?![\w\-])/g,
  ]),
  regexDetector('secret.stripe_key', SECRET_PRIORITY, ['sk_live_', 'rk_live_'], [/(?<![\w\-])[sr]k_live_[A-Za-z0-9]{20,247}(?![\w\-])/g]),
  regexDetector('secret.google_api_key', SECRET_PRIORITY, ['AIza'], [/(?<![\w\-])AIza[\w\-]{35}(?![\w\-])/g]),
  regexDetector('secret.npm_token', SECRET_PRIORITY, ['npm_'], [/(?<![\w\-])npm_[A-Za-z0-9]{36}(?![\w\-])/g]),
  regexDetector('secret.huggingface_token', SECRET_PRIORITY, ['hf_'], [/(?<![\w\-])hf_[A-Za-z]{34}(?![\w\-])/g], (value) =>
    /[A-Z]/.test(value) && /[a-z]/.test(value.slice(3)),
  ),
  regexDetector('secret.sendgrid_key', SECRET_PRIORITY, ['SG.'], [/(?<![\w\-.])SG\.[\w\-]{22}\.[\w\-]{43}(?![\w\-])/g]),
  regexDetector('secret.pypi_token', SECRET_PRIORITY, ['pypi-AgEIcHlwaS5vcmc'], [/(?<![\w\-])pypi-AgEIcHlwaS5vcmc[\w\-]{50,400}(?![\w\-])/g]),
  regexDetector('secret.digitalocean_token', SECRET_PRIORITY, ['_v1_'], [/(?<![\w\-])do[por]_v1_[a-f0-9]{64}(?![\w\-])/g]),
  regexDetector('secret.shopify_token', SECRET_PRIORITY, ['shpat_', 'shpca_', 'shppa_', 'shpss_'], [
    /(?<![\w\-])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![\w\-])/g,
  ]),
  regexDetector('secret.jwt', 1, ['eyJ'], [JWT], validJwt),
  // Keys with no prefix of their own: only next to the words that name them.
  {
    priority: 3,
    gate: (text, facts) => /secret/i.test(text) || /secret/i.test(facts.context),
    find: regexDetector(
      'secret.aws_secret_key',
      3,
      [],
      [/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g],
      // Mixed case and a digit: a 40-character hex SHA-1 next to "secret" is not an AWS key.
      (value, text, start, end, facts) => hasUpperLowerDigit(value) && nearby(text, start, end, facts, AWS_SECRET_CONTEXT, 96, 0),
    ).find,
  },
  {
    priority: 3,
    gate: (text, facts) => text.includes('==') && (/key|azure/i.test(text) || /key|azure/i.test(facts.context)),
    find: regexDetector(
      'secret.azure_storage_key',
      3,
      [],
      [/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{86}==(?![A-Za-z0-9/+=])/g],
      (_value, text, start, end, facts) => nearby(text, start, end, facts, AZURE_KEY_CONTEXT, 96, 0),
    ).find,
  },
];

const DETECTORS: readonly Detector[] = [
  privateKeyDetector,
  ...secretDetectors,
  ibanDetector,
  cardDetector,
  emailDetector,
  ssnDetector,
  phoneE164Detector,
  phoneNanpDetector,
  phoneContextDetector,
];

/**
 * Overlaps go to the lower priority number, then the longer match: the digits of an IBAN are not
 * also a card or a phone number, the `x@y.z` inside a URL with a token is not also an email.
 * Each character is claimed at most once, so this is linear in the text length.
 */
function resolve(candidates: Candidate[], length: number): Match[] {
  if (candidates.length < 2) return candidates.map(({ type, start, end }) => ({ type, start, end }));
  candidates.sort((a, b) => a.priority - b.priority || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const taken = new Uint8Array(length);
  const kept: Match[] = [];
  for (const c of candidates) {
    let free = true;
    for (let i = c.start; i < c.end; i++) {
      if (taken[i] === 1) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    taken.fill(1, c.start, c.end);
    kept.push({ type: c.type, start: c.start, end: c.end });
  }
  return kept.sort((a, b) => a.start - b.start);
}

/**
 * Every finding in `text`, as non-overlapping matches sorted by start offset.
 *
 * @example detect('mail me at jane@example.com') // [{ type: 'email', start: 11, end: 27 }]
 */
export function detect(text: string, options: DetectOptions = {}): Match[] {
  if (text.length === 0) return [];
  const facts: Facts = { hasDigit: /[0-9]/.test(text), context: options.context ?? '' };
  const candidates: Candidate[] = [];
  for (const detector of DETECTORS) {
    if (!detector.gate(text, facts)) continue;
    detector.find(text, facts, (type, start, end) => {
      if (end > start) candidates.push({ type, start, end, priority: detector.priority });
    });
  }
  const matches = resolve(candidates, text.length);
  const types = options.types;
  return types === undefined ? matches : matches.filter((m) => types.has(m.type));
}

/** What replaces a match when it is redacted: `[REDACTED:email]`. */
export function redactionMarker(type: FindingType): string {
  return `[REDACTED:${type}]`;
}

/** `text` with each match (non-overlapping, sorted, as `detect` returns them) replaced by its marker. */
export function replaceMatches(text: string, matches: readonly Match[]): string {
  let out = '';
  let copied = 0;
  for (const m of matches) {
    out += text.slice(copied, m.start) + redactionMarker(m.type);
    copied = m.end;
  }
  return out + text.slice(copied);
}
