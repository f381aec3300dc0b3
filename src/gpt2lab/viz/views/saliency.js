// @ts-check
// Which input tokens made an output likely (Ecco's saliency), by two named methods side by
// side: each method a line of the prompt coloured by its score (blue: raised the target's
// log-probability, red: lowered it), scaled to its own largest score.

import { diverging, flowTokens, fmt, frame, ink, quote, size, svgText } from "./common.js";

/**
 * @typedef {object} SaliencyData
 * @property {string[]} tokens
 * @property {number} position where the output is read
 * @property {string} target the output token
 * @property {number} log_prob its log-probability there
 * @property {Record<string, number[]>} methods a score per token for each method
 */

/**
 * @param {SaliencyData} data
 * @param {HTMLElement} container
 */
export function saliency(data, container) {
  const { wrap, root, caption } = frame(container, "saliency", "saliency");
  const names = Object.keys(data.methods);
  const tokens = data.tokens.slice(0, data.position + 1);
  const rest = `which tokens made ${quote(data.target)} likely after position ${data.position}` +
    ` (log p ${fmt(data.log_prob)}): hover a token`;
  let y = 8;
  const left = 150;
  for (const name of names) {
    const scores = data.methods[name].slice(0, tokens.length);
    const largest = Math.max(...scores.map(Math.abs), 1e-12);
    svgText(root, left - 10, y + 17, name, { "text-anchor": "end", "font-weight": "bold" });
    const { cells, height } = flowTokens(root, root, [...tokens, ` → ${data.target}`],
      (i) => (i < tokens.length ? diverging(scores[i] / largest) : "#fff3c4"),
      (i) => (i < tokens.length ? ink(scores[i] / largest) : "black"),
      { x: left, y, width: 600 });
    cells.forEach((cell, i) => {
      if (i === tokens.length) { cell.setAttribute("class", "target"); return; }
      cell.setAttribute("data-method", name);
      cell.setAttribute("data-value", String(scores[i]));
      const box = /** @type {SVGRectElement} */ (cell.querySelector("rect"));
      cell.addEventListener("mouseenter", () => {
        box.setAttribute("stroke", "#000");
        const all = names.map((n) => `${n} ${fmt(data.methods[n][i])}`).join(", ");
        caption.textContent = `token ${i} ${quote(tokens[i])}: ${all}`;
      });
      cell.addEventListener("mouseleave", () => {
        box.setAttribute("stroke", "none");
        caption.textContent = rest;
      });
    });
    y += height + 8;
  }
  size(root, left + 620, y + 4);
  caption.textContent = rest;
  wrap.dataset.ready = "1";
  return {};
}
