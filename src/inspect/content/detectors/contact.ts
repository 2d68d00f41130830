/**
 * Contact data: email addresses and phone numbers (international E.164, North American, and the
 * shapes that are phone numbers only next to a phone word).
 */
import { before, IDENTIFIER_CONTEXT, nearby, PHONE_CONTEXT } from './context.js';
import { regexDetector, type Detector } from './detector.js';
import { isDigitCode, isWordCode } from './validators.js';

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

/** Email addresses, except asset names, scp-style git remotes and URL userinfo. */
export const emailDetector = regexDetector('email', 6, ['@'], [EMAIL], (value, text, start, end) => {
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

/** International numbers: `+` and 8–15 digits in groups. */
export const phoneE164Detector: Detector = {
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

/** North American numbers with separators (see NANP). */
export const phoneNanpDetector: Detector = {
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

/** Local, bare and national numbers next to a phone word (see PHONE_IF_CONTEXT). */
export const phoneContextDetector: Detector = {
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
