/** Reading README.md as GitHub renders it: headings outside code fences, and their anchors. */

export interface Heading {
  level: number;
  text: string;
  anchor: string;
}

/** GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces to `-`; repeats get -1, -2, ... */
export function headings(markdown: string): Heading[] {
  const seen = new Map<string, number>();
  const found: Heading[] = [];
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const match = fenced ? null : /^(#{1,6}) (.+?)\s*$/.exec(line);
    if (!match) continue;
    const text = match[2]!;
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.push({ level: match[1]!.length, text, anchor: count === 0 ? base : `${base}-${count}` });
  }
  return found;
}

/** The section under `## title`, up to the next `## ` heading. */
export function section(markdown: string, title: string): string {
  const after = markdown.split(`\n## ${title}\n`)[1];
  if (after === undefined) throw new Error(`README.md has no "## ${title}" section`);
  return after.split('\n## ')[0]!;
}
