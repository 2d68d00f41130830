/**
 * Context keywords: the words near a match (or in the member name holding the text) that make a
 * number a card, an SSN or a phone number, or a base64 run an AWS or Azure key.
 */
import type { Facts } from './detector.js';

/** Splits camelCase so `cardNumber` and `awsSecretAccessKey` read as words. */
function words(text: string): string {
  return text.replace(/([a-z])([A-Z])/g, '$1 $2');
}

/**
 * True when `keyword` occurs within `before` characters before the match, `after` characters
 * after it, or in the caller's context (the JSON member name).
 */
export function nearby(text: string, start: number, end: number, facts: Facts, keyword: RegExp, before: number, after: number): boolean {
  const window = `${words(text.slice(Math.max(0, start - before), start))} | ${words(text.slice(end, end + after))}`;
  return keyword.test(window) || (facts.context !== '' && keyword.test(words(facts.context)));
}

/** True when `keyword` occurs within `chars` characters before the match, or in the caller's context. */
export function before(text: string, start: number, facts: Facts, keyword: RegExp, chars: number): boolean {
  return keyword.test(words(text.slice(Math.max(0, start - chars), start))) || (facts.context !== '' && keyword.test(words(facts.context)));
}

/** Any of `patterns` as a whole word (no letter on either side), case-insensitive. */
function anyWord(patterns: readonly string[], extra = ''): RegExp {
  return new RegExp(`(?<![a-z])(?:${patterns.join('|')})(?![a-z])${extra}`, 'i');
}

/** Words that name a payment card: needed for a contiguous run of card digits. */
export const CARD_CONTEXT = anyWord([
  'cards?', 'card ?holder', 'card ?num(?:ber)?', 'card ?no', 'visa', 'master ?card', 'amex', 'american express', 'discover',
  'jcb', 'diners(?: club)?', 'union ?pay', 'maestro', 'cc', 'ccn', 'cc ?num(?:ber)?', 'credit', 'debit', 'payment', 'pay',
  'pan', 'cvv2?', 'cvc2?', 'csc', 'exp', 'expiry', 'expires', 'expiration', 'billing', 'checkout', 'charge',
]);

/** Words that name a US social security number: needed for a bare 9-digit run. */
export const SSN_CONTEXT = anyWord(['ssns?', 'social security', 'social sec', 'soc\\.? ?sec', 'ss ?#', 'ss ?no', 'ss ?num(?:ber)?']);

/** Words that make a phone- or SSN-shaped number an identifier of something else; also `#` right before it. */
export const IDENTIFIER_CONTEXT = anyWord(
  [
    'order', 'invoice', 'inv', 'ref', 'reference', 'tracking', 'account', 'acct', 'po', 'sku', 'serial', 'ticket',
    'case ?(?:no|number|id)', 'confirmation', 'conf', 'booking', 'reservation', 'transaction', 'txn', 'part', 'model', 'item',
    'id', 'version', 'ver', 'build', 'isbn', 'patent', 'policy', 'claim', 'receipt', 'batch', 'lot',
  ],
  '|#\\s?:?\\s?$',
);

/** Words that name a phone number: needed for the shapes that are phone numbers only next to one. */
export const PHONE_CONTEXT = anyWord([
  'phones?', 'ph', 'tel', 'telephone', 'call', 'calling', 'mobile', 'mob', 'cell', 'cellphone', 'caller', 'fax', 'contact',
  'reach', 'text', 'sms', 'whats ?app', 'dial', 'ring', 'hotline', 'helpline', 'landline',
]);

/** Words that name an AWS secret access key, which has no prefix of its own. */
export const AWS_SECRET_CONTEXT = /(?:aws|amazon)[^\n]{0,24}secret|secret[\s_\-.]*access[\s_\-.]*key/i;

/** Words that name an Azure storage account key, which has no prefix of its own. */
export const AZURE_KEY_CONTEXT = /account[\s_\-.]*key|azure[\s_\-.]*(?:storage|key)|storage[\s_\-.]*(?:account[\s_\-.]*)?key|shared[\s_\-.]*key/i;
