// @ts-check
// The next token at every position (Ecco's output view): under each token of the prompt, the
// k most likely next tokens with their probability as a bar; the token that really comes next
// is framed. Hover a column to read it.

import { MONO, blues, fmt, frame, quote, size, svgEl, svgText, textWidth } from "./common.js";

/**
 * @typedef {object} NextData
 * @property {string[]} tokens
 * @property {string[][]} top_tokens [position][k]
 * @property {number[][]} top_probs [position][k]
 * @property {(number | null)[]} next_probs the probability of the real next token (null: last)
 */

/**
 * @param {NextData} data
 * @param {HTMLElement} container
 */
export function nextTokens(data, container) {
  const { wrap, root, caption } = frame(container, "next-token probabilities", "next");
  const font = 12;
  const k = data.top_tokens[0]?.length ?? 0;
  const candidates = data.top_tokens.flat().map((t) => `${quote(t)} 100%`);
  const texts = [...data.tokens.map(quote), ...candidates];
  const column = Math.max(70, ...texts.map((t) => textWidth(root, t, font) + 10));
  const [top, row] = [34, 22];
  const rest = "hover a position; the framed token is the one that comes next";
  data.tokens.forEach((token, t) => {
    const x = 8 + t * (column + 6);
    const g = svgEl("g", { class: "position", "data-t": t }, root);
    const back = svgEl("rect", {
      x: x - 3, y: 2, width: column + 6, height: top + k * row + 6, fill: "#fff3c4",
      "fill-opacity": 0, class: "back",
    }, g);
    svgText(g, x + column / 2, 20, quote(token), {
      "text-anchor": "middle", "font-family": MONO, "font-size": font + 1, "font-weight": "bold",
    });
    const real = t + 1 < data.tokens.length ? data.tokens[t + 1] : null;
    data.top_tokens[t].forEach((candidate, j) => {
      const p = data.top_probs[t][j];
      const y = top + j * row;
      svgEl("rect", { x, y, width: column, height: row - 3, fill: "#f3f3f3" }, g);
      svgEl("rect", {
        x, y, width: Math.max(0.5, column * p), height: row - 3, fill: blues(0.25 + 0.75 * p),
        class: "bar", "data-p": p,
      }, g);
      if (candidate === real) {
        svgEl("rect", {
          x, y, width: column, height: row - 3, fill: "none", stroke: "#d62728",
          "stroke-width": 2, class: "real",
        }, g);
      }
      svgText(g, x + 3, y + 13, `${quote(candidate)} ${(100 * p).toFixed(0)}%`, {
        "font-family": MONO, "font-size": font,
      });
    });
    g.addEventListener("mouseenter", () => {
      back.setAttribute("fill-opacity", "1");
      const list = data.top_tokens[t].map((c, j) => `${quote(c)} ${fmt(data.top_probs[t][j])}`);
      const p = data.next_probs[t];
      const then = real === null || p === null ? "" : `; next is ${quote(real)} at ${fmt(p)}`;
      caption.textContent = `after ${quote(token)}: ${list.join(", ")}${then}`;
    });
    g.addEventListener("mouseleave", () => {
      back.setAttribute("fill-opacity", "0");
      caption.textContent = rest;
    });
  });
  size(root, 16 + data.tokens.length * (column + 6), top + k * row + 12);
  caption.textContent = rest;
  wrap.dataset.ready = "1";
  return {};
}
