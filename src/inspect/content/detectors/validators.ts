/**
 * Character tests and check digits the detector families share: Luhn for card numbers, ISO 7064
 * MOD 97-10 for IBANs, and the mixed-case test for random tokens.
 */

const ZERO = 48;

/** True for the char code of an ASCII digit. */
export function isDigitCode(code: number): boolean {
  return code >= ZERO && code <= ZERO + 9;
}

/** True for the char code of a regex word character (`\w`: ASCII letter, digit or `_`). */
export function isWordCode(code: number): boolean {
  return (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95;
}

/** True when the Luhn check digit of a string of ASCII digits is valid. */
export function luhn(digits: string): boolean {
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

/** Has an uppercase letter, a lowercase letter and a digit, as random tokens do (and words, hex and numbers do not). */
export function hasUpperLowerDigit(value: string): boolean {
  return /[A-Z]/.test(value) && /[a-z]/.test(value) && /[0-9]/.test(value);
}

/** True when the check digits of a compact, uppercase IBAN are valid (ISO 7064 MOD 97-10). */
export function ibanChecksumValid(iban: string): boolean {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    const value = code >= 65 ? code - 55 : code - ZERO;
    remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97;
  }
  return remainder === 1;
}
