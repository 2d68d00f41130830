/**
 * Go's `path.Match`, for the `exclude_files` patterns of bundle signature verification (OPA
 * matches them with it): `*` and `?` never match "/", `[...]` classes with ranges and `^`, and
 * `\\` escapes. A pattern compiles to a regular expression once, when the config is read.
 */

/** Compiles a Go `path.Match` pattern; throws on a malformed one (Go's ErrBadPattern). */
export function compileExcludePattern(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= pattern.length) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
      source += escapeRegExp(pattern[++i] as string);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '[';
      if (pattern[j] === '^') {
        cls += '^';
        j++;
      }
      let items = 0;
      while (j < pattern.length && pattern[j] !== ']') {
        let lo = pattern[j] as string;
        if (lo === '\\') lo = pattern[++j] ?? '';
        if (lo === '' || lo === '-') throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
        j++;
        if (pattern[j] === '-') {
          let hi = pattern[j + 1] ?? '';
          if (hi === '\\') hi = pattern[(j += 1) + 1] ?? '';
          if (hi === '' || hi === ']') throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
          if (hi < lo) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
          cls += `${escapeRegExp(lo)}-${escapeRegExp(hi)}`;
          j += 2;
        } else cls += escapeRegExp(lo);
        items++;
      }
      if (j >= pattern.length || items === 0) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
      source += `${cls}]`;
      i = j;
    } else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, 'su');
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}
