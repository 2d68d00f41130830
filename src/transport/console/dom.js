// Building the page from API data. Every value goes in through textContent (or an attribute),
// never innerHTML: whatever a record holds is shown as text, not markup.

/**
 * An element with attributes and children; strings become text nodes.
 * @param {string} tag
 * @param {Record<string, string>} [attributes]
 * @param {Array<Node | string | number | null | undefined>} [children]
 */
export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a table body's rows. */
export function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

/** A table row of cells; a cell is a string, a node, or `{ value, num: true }` for a right-aligned number. */
export function row(cells) {
  return el('tr', {}, cells.map((cell) => {
    if (cell && typeof cell === 'object' && !(cell instanceof Node)) return el('td', { class: cell.num ? 'num' : '' }, [cell.value]);
    return el('td', {}, [cell]);
  }));
}

/**
 * US dollars as the ledger keeps them, to the micro-dollar, without trailing zeros past the cents:
 * 12.5 → "$12.50", 0.001234 → "$0.001234". Exact for the page and the API to be compared.
 */
export function usd(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  const fixed = value.toFixed(6).replace(/(\.\d\d\d*?)0+$/, '$1');
  return `$${fixed}`;
}

/** A time for people: milliseconds or an ISO string, shown in the browser's zone. */
export function when(value) {
  if (value === null || value === undefined || value === '') return '—';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Sets the status line under a panel (a problem, or empty). */
export function setStatus(panel, text, isError = false) {
  const line = document.querySelector(`.status[data-for="${panel}"]`);
  if (!line) return;
  line.textContent = text;
  line.classList.toggle('error', isError);
}
