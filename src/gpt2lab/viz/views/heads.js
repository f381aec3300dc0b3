// @ts-check
// Every head at once: a grid of small attention patterns, a row per block and a column per
// head (the report's "every head" picture, interactive). Hover a head to read its name and
// where its last token looks; click it to choose it (the web app shows its lines).

import { MIN_WEIGHT, blues, colourBar, fmt, frame, quote, size, svgEl, svgText } from "./common.js";

/**
 * @typedef {object} HeadsData
 * @property {string[]} tokens
 * @property {number[]} layers
 * @property {number} n_head
 * @property {number[][][][]} patterns [layer][head][query][key <= query]
 */

// Past this many tokens a head is one picture (a PNG inside the SVG), not a square per weight:
// 36 heads of 160 tokens would be 460,000 squares.
const PIXELS_FROM = 48;

/**
 * One head's pattern as an <image>: a pixel per weight, scaled up without smoothing.
 * @param {Element} parent
 * @param {number[][]} rows [query][key <= query]
 * @param {number} x
 * @param {number} y
 * @param {number} side
 */
function pixels(parent, rows, x, y, side) {
  const T = rows.length;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = T;
  const context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  context.fillStyle = blues(0);
  context.fillRect(0, 0, T, T);
  rows.forEach((weights, q) => weights.forEach((w, k) => {
    if (w < MIN_WEIGHT) return;
    context.fillStyle = blues(w);
    context.fillRect(k, q, 1, 1);
  }));
  svgEl("image", {
    x, y, width: side, height: side, href: canvas.toDataURL("image/png"),
    preserveAspectRatio: "none", style: "image-rendering:pixelated", class: "pixels",
  }, parent);
}

/**
 * @param {HeadsData} data
 * @param {HTMLElement} container
 * @param {{onSelect?: (layer: number, head: number) => void}} [options]
 */
export function attentionHeads(data, container, options = {}) {
  const { wrap, root, caption } = frame(container, "every attention head", "heads");
  const T = data.tokens.length;
  const cellSize = Math.max(1.5, Math.min(8, 72 / T));
  const side = cellSize * T;
  const [left, top, gap] = [36, 30, 8];
  for (let h = 0; h < data.n_head; h++) {
    svgText(root, left + h * (side + gap) + side / 2, top - 8, `h${h}`, {
      "text-anchor": "middle", "font-size": 11,
    });
  }
  data.layers.forEach((layer, L) => {
    const y = top + L * (side + gap);
    svgText(root, left - 6, y + side / 2 + 4, `b${layer}`, {
      "text-anchor": "end", "font-size": 11,
    });
    for (let h = 0; h < data.n_head; h++) {
      const x = left + h * (side + gap);
      const g = svgEl("g", {
        class: "head", "data-layer": layer, "data-h": h, cursor: "pointer",
      }, root);
      svgEl("rect", { x, y, width: side, height: side, fill: blues(0), class: "back" }, g);
      if (T > PIXELS_FROM) pixels(g, data.patterns[L][h], x, y, side);
      else {
        data.patterns[L][h].forEach((weights, q) => weights.forEach((w, k) => {
          if (w < MIN_WEIGHT) return; // the background's colour
          svgEl("rect", {
            x: x + k * cellSize, y: y + q * cellSize, width: cellSize, height: cellSize,
            fill: blues(w), class: "cell",
          }, g);
        }));
      }
      const border = svgEl("rect", {
        x: x - 1, y: y - 1, width: side + 2, height: side + 2, fill: "none", stroke: "#bbb",
        "stroke-width": 1, class: "border",
      }, g);
      g.addEventListener("mouseenter", () => {
        border.setAttribute("stroke", "#d62728");
        border.setAttribute("stroke-width", "3");
        const last = data.patterns[L][h][T - 1];
        const k = last.indexOf(Math.max(...last));
        caption.textContent = `block ${layer} head ${h}: the last token ` +
          `${quote(data.tokens[T - 1])} looks most at ${quote(data.tokens[k])} (${fmt(last[k])})`;
      });
      g.addEventListener("mouseleave", () => {
        border.setAttribute("stroke", "#bbb");
        border.setAttribute("stroke-width", "1");
        caption.textContent = "hover a head; rows: queries, columns: keys";
      });
      g.addEventListener("click", () => options.onSelect?.(layer, h));
    }
  });
  const bottom = top + data.layers.length * (side + gap);
  colourBar(root, left + 30, bottom + 6, blues, "0", "1");
  size(root, Math.max(left + data.n_head * (side + gap), 240), bottom + 24);
  caption.textContent = "hover a head; rows: queries, columns: keys";
  wrap.dataset.ready = "1";
  return {};
}
