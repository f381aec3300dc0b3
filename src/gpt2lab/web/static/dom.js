// @ts-check
// Small DOM and formatting helpers that know nothing of the notebook.

/**
 * The first element that matches a selector.
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {any}
 */
export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * A new element: attributes (class, on<event> listeners, others as attributes; null, undefined
 * and false are left out) and children (nested lists flattened, null and undefined left out).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {any}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/**
 * A select element of [value, label] options.
 * @param {[string, string][]} options
 * @param {string} value the selected one
 * @param {(event: Event) => void} [onchange]
 * @returns {any}
 */
export function select(options, value, onchange) {
  const node = el("select", { onchange });
  for (const [v, label] of options) {
    node.append(el("option", { value: v, selected: v === value }, label));
  }
  return node;
}

/**
 * 0, 1, ..., n - 1.
 * @param {number} n
 * @returns {number[]}
 */
export const range = (n) => Array.from({ length: n }, (_, i) => i);

/**
 * A string in quotes: shows leading spaces and newlines.
 * @param {string} text
 */
export const quote = (text) => JSON.stringify(text);

/**
 * A probability as a percentage.
 * @param {number} p
 */
export const pct = (p) => `${(100 * p).toFixed(2)}%`;

/**
 * A number of a table, short; null is a masked attention score (JSON has no infinity).
 * @param {number | null} v
 * @returns {string}
 */
export function fmt(v) {
  if (v === null) return "−∞";
  const size = Math.abs(v);
  if (v !== 0 && (size >= 1e4 || size < 1e-3)) return v.toExponential(2);
  return v.toFixed(3);
}

/**
 * Shows an error above the cells, or hides the box when there is none.
 * @param {Error | null} error
 */
export function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? error.message : "";
}

/**
 * A paragraph of explanation (class "note", or "note error" and so on).
 * @param {string} text
 * @param {string} [cls]
 * @returns {any}
 */
export const note = (text, cls = "note") => el("p", { class: cls }, text);

/**
 * Draws a cell's body: "computing…" until its render function is done, its error if it fails.
 * @param {import("./state.js").Cell} cell
 */
export async function renderCell(cell) {
  const body = $(".body", cell.el);
  body.replaceChildren(note("computing…"));
  try {
    await cell.render(cell, body);
  } catch (error) {
    body.replaceChildren(note(/** @type {Error} */ (error).message, "note error"));
  }
}
