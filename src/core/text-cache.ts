/**
 * A cache keyed by text, bounded by the total characters of its keys and by its number of
 * entries, for work that is a pure function of a string and costly (token counts, content
 * findings): agents resend the whole conversation on every turn and system prompts repeat across
 * callers, so most of a request's text was seen on an earlier one. Keys are the texts
 * themselves, so a cache holds prompt text in process memory (never anywhere else); a text longer
 * than a quarter of the character bound is never kept.
 *
 * Two generations rather than an exact LRU: a hit in the young one costs one lookup, where moving
 * every hit to the back of one map cost a delete and an insert per string per request (most of
 * a warm lookup). A hit in the old generation is copied to the young one; when the young one
 * fills half the bounds it becomes the old one, and the old one is dropped. Whatever was used
 * within the last half of the bounds is kept, in at most the bounds.
 */
export class TextCache<V> {
  #young = new Map<string, V>();
  #old = new Map<string, V>();
  #youngChars = 0;

  constructor(
    private readonly maxChars: number,
    private readonly maxEntries: number,
  ) {}

  /** The value kept for `text`; undefined when none. */
  get(text: string): V | undefined {
    const young = this.#young.get(text);
    if (young !== undefined) return young;
    const old = this.#old.get(text);
    if (old !== undefined) this.keep(text, old);
    return old;
  }

  /** Keeps `value` for `text`. */
  set(text: string, value: V): void {
    if (text.length > this.maxChars / 4) return;
    this.keep(text, value);
  }

  clear(): void {
    this.#young = new Map();
    this.#old = new Map();
    this.#youngChars = 0;
  }

  private keep(text: string, value: V): void {
    if (!this.#young.has(text)) this.#youngChars += text.length;
    this.#young.set(text, value);
    if (this.#youngChars > this.maxChars / 2 || this.#young.size > this.maxEntries / 2) {
      this.#old = this.#young;
      this.#young = new Map();
      this.#youngChars = 0;
    }
  }
}
