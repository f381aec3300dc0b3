// @ts-check
// The cells drawn by the interactive views of gpt2lab.viz.views (the same JavaScript a
// Jupyter notebook runs, served at /views): attention as lines between tokens, and every head.
// Their data comes from /api/view, which builds it with the library, as a notebook does.

import { api } from "./api.js";
import { note } from "./dom.js";
import { actions, state } from "./state.js";

/** @typedef {import("./state.js").Cell} Cell */

/**
 * The data of one view for the shown run.
 * @param {string} view "map", "attention" or "heads"
 * @returns {Promise<any>}
 */
export function viewData(view) {
  const request = /** @type {import("./types.js").Run} */ (state.run).request;
  return api("/api/view", { ...request, view });
}

/**
 * A view's module: the views' own files, the same ones a notebook inlines.
 * @param {string} file
 * @returns {Promise<any>}
 */
export const viewModule = (file) => import(`/views/${file}`);

/**
 * Draw a cell's view once the cell is seen: a long prompt's views are big, and "run to" a
 * later cell passes this one by.
 * @param {HTMLElement} body
 * @param {() => Promise<void>} draw
 */
function whenSeen(body, draw) {
  body.replaceChildren(note("drawn when scrolled into view"));
  const observer = new IntersectionObserver((entries) => {
    if (!entries.some((entry) => entry.isIntersecting)) return;
    observer.disconnect();
    draw().catch((error) => body.replaceChildren(note(error.message, "note error")));
  });
  observer.observe(body);
}

/**
 * Attention as lines from each token to the tokens it attends to, every head in its colour.
 * @param {Cell} _cell
 * @param {HTMLElement} body
 */
export function renderAttentionLines(_cell, body) {
  whenSeen(body, () => drawLines(body));
}

/**
 * Every head of every block as a small pattern; clicking one goes to its block's pattern.
 * @param {Cell} _cell
 * @param {HTMLElement} body
 */
export function renderHeads(_cell, body) {
  whenSeen(body, () => drawHeads(body));
}

/** @param {HTMLElement} body */
async function drawLines(body) {
  const [data, { attentionLines }] = await Promise.all([
    viewData("attention"), viewModule("attention.js"),
  ]);
  const host = document.createElement("div");
  body.replaceChildren(
    note("Each line joins a token (left) to a token it attends to (right); the stronger the " +
      "line, the larger the weight. Hover a token to keep only its lines; click a head's " +
      "square to hide it."),
    host,
  );
  attentionLines(data, host);
}

/** @param {HTMLElement} body */
async function drawHeads(body) {
  const [data, { attentionHeads }] = await Promise.all([
    viewData("heads"), viewModule("heads.js"),
  ]);
  const host = document.createElement("div");
  body.replaceChildren(
    note("A row per block, a column per head: rows are queries, columns keys. Click a head " +
      "to open its block's attention pattern."),
    host,
  );
  attentionHeads(data, host, {
    onSelect: (/** @type {number} */ layer) => actions.go(`blocks.${layer}.attn.hook_pattern`),
  });
}
