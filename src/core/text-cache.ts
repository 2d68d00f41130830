/**
 * A cache keyed by text, bounded by the total characters of its keys and by its number of
 * entries, least recently used evicted first. For work that is a pure function of a string and
 * costly (token counts, content findings): agents resend the whole conversation on every turn
 * and system prompts repeat across callers, so most of a request's text was seen on an earlier
 * one. Keys are the texts themselves, so a cache holds prompt text in process memory (never
 * anywhere else); a text longer than a quarter of the character bound is never kept.
 */
export class TextCache<V> {
  readonly #entries = new Map<string, V>();
  #chars = 0;

  constructor(
    private readonly maxChars: number,
    private readonly maxEntries: number,
  ) {}

  /** The value kept for `text`, which becomes the most recently used; undefined when none. */
  get(text: string): V | undefined {
    const value = this.#entries.get(text);
    if (value !== undefined) {
      this.#entries.delete(text);
      this.#entries.set(text, value);
    }
    return value;
  }

  /** Keeps `value` for `text`, evicting the least recently used entries past the bounds. */
  set(text: string, value: V): void {
    if (text.length > this.maxChars / 4) return;
    const previous = this.#entries.get(text);
    if (previous !== undefined) this.#entries.delete(text);
    else this.#chars += text.length;
    this.#entries.set(text, value);
    while (this.#chars > this.maxChars || this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
      this.#chars -= oldest.length;
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#chars = 0;
  }
}
