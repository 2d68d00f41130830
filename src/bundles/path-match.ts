/**
 * Go's `path.Match`, for the `exclude_files` patterns of bundle signature verification (OPA
 * matches them with it): `*` and `?` never match "/", `[...]` classes with ranges and `^`, and
 * `\` escapes. A pattern compiles to a regular expression once, when the config is read.
 *
 * Go reads the pattern and the name rune by rune, so the pattern is read by code points, and
 * every literal character is written as a `\u{…}` escape, valid in and out of a class with the
 * `u` flag. One strictness is Signalbox's own: a range whose end is below its start, which Go
 * accepts and never matches, is a bad pattern here.
 */

/** Compiles a Go `path.Match` pattern; throws on a malformed one (Go's ErrBadPattern). */
export function compileExcludePattern(pattern: string): RegExp {
  const chars = Array.from(pattern);
  const bad = (): Error => new Error(`bad pattern ${JSON.stringify(pattern)}`);
  let source = '';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as string;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= chars.length) throw bad();
      source += literal(chars[++i] as string);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '[';
      if (chars[j] === '^') {
        cls += '^';
        j++;
      }
      let items = 0;
      while (j < chars.length && chars[j] !== ']') {
        // Go's getEsc, for both ends of a range: an unescaped "-" or "]" is an error, "\" takes the next character as it is.
        let lo = chars[j] as string;
        if (lo === '-') throw bad();
        if (lo === '\\') lo = chars[++j] ?? '';
        if (lo === '') throw bad();
        j++;
        if (chars[j] === '-') {
          let hi = chars[j + 1] ?? '';
          if (hi === '-' || hi === ']') throw bad();
          if (hi === '\\') hi = chars[(j += 1) + 1] ?? '';
          if (hi === '') throw bad();
          if ((hi.codePointAt(0) as number) < (lo.codePointAt(0) as number)) throw bad();
          cls += `${literal(lo)}-${literal(hi)}`;
          j += 2;
        } else cls += literal(lo);
        items++;
      }
      if (j >= chars.length || items === 0) throw bad();
      source += `${cls}]`;
      i = j;
    } else source += literal(c);
  }
  return new RegExp(`^${source}$`, 'su');
}

/** One character (a code point) as a regular expression with the `u` flag matches it, in or out of a class. */
function literal(c: string): string {
  return `\\u{${(c.codePointAt(0) as number).toString(16)}}`;
}
