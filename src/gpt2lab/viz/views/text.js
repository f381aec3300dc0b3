// @ts-check
// Text coloured by an activation (CircuitsVis's idea): each token on a background whose
// colour is its value (blue above 0, red below; white at 0), its value on hover.

import { blues, colourBar, diverging, flowTokens, fmt, frame, ink, quote, size } from "./common.js";

/**
 * @typedef {object} TextData
 * @property {string[]} tokens
 * @property {number[]} values one per token
 * @property {string} label what the values are ("block 0 neuron 12")
 */

/**
 * @param {TextData} data
 * @param {HTMLElement} container
 */
export function coloredText(data, container) {
  const { wrap, root, caption } = frame(container, data.label, "text");
  const signed = data.values.some((v) => v < 0);
  const largest = Math.max(...data.values.map(Math.abs), 1e-12);
  const scale = (/** @type {number} */ v) => v / largest;
  const colour = signed ? diverging : blues;
  const width = 720;
  const { cells, height } = flowTokens(root, root, data.tokens,
    (i) => colour(scale(data.values[i])), (i) => ink(scale(data.values[i])),
    { x: 8, y: 8, width });
  const rest = `${data.label}: hover a token`;
  cells.forEach((cell, i) => {
    cell.setAttribute("data-value", String(data.values[i]));
    const box = /** @type {SVGRectElement} */ (cell.querySelector("rect"));
    cell.addEventListener("mouseenter", () => {
      box.setAttribute("stroke", "#000");
      caption.textContent = `${data.label}: token ${i} ${quote(data.tokens[i])} = ` +
        `${fmt(data.values[i])}`;
    });
    cell.addEventListener("mouseleave", () => {
      box.setAttribute("stroke", "none");
      caption.textContent = rest;
    });
  });
  const low = signed ? fmt(-largest) : "0";
  colourBar(root, 60, height + 16, signed ? (t) => diverging(2 * t - 1) : blues, low, fmt(largest));
  size(root, width + 16, height + 36);
  caption.textContent = rest;
  wrap.dataset.ready = "1";
  return {};
}
