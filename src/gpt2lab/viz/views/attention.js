// @ts-check
// Attention as lines between tokens (bertviz's head view): each query on the left, each key
// it may attend to on the right, a line whose opacity is the attention weight, one colour per
// head. Hover a token to see only its lines; click a head's square to show or hide it.

import {
  HEAD_COLOURS, MIN_WEIGHT, MONO, fmt, frame, htmlEl, quote, size, svgEl, svgText, textWidth,
} from "./common.js";

/**
 * @typedef {object} AttentionData
 * @property {string[]} tokens
 * @property {number[]} layers the blocks in ``patterns``, in order
 * @property {number} n_head
 * @property {number[][][][]} patterns [layer][head][query][key <= query]
 * @property {number} layer the block shown first (an entry of ``layers``)
 * @property {number[]} heads the heads shown first
 */

/**
 * @param {AttentionData} data
 * @param {HTMLElement} container
 */
export function attentionLines(data, container) {
  const { wrap, controls, root, caption } = frame(container, "attention lines", "attention");
  const T = data.tokens.length;
  const shownHeads = new Set(data.heads);
  let layer = data.layer;
  let hover = /** @type {{side: string, i: number} | null} */ (null);

  const pick = htmlEl("select", { class: "layer", "aria-label": "block" }, "", controls);
  for (const L of data.layers) htmlEl("option", { value: String(L) }, `block ${L}`, pick);
  /** @type {HTMLSelectElement} */ (pick).value = String(layer);
  pick.addEventListener("change", () => {
    layer = Number(/** @type {HTMLSelectElement} */ (pick).value);
    draw();
  });

  const font = 14;
  const row = 22;
  const widest = Math.max(...data.tokens.map((t) => textWidth(root, quote(t), font)), 30);
  const [left, gap, top] = [widest + 16, 220, 48];
  const right = left + gap;
  const lines = svgEl("g", { class: "lines" }, root);
  const squares = svgEl("g", { class: "heads" }, root);
  const labels = svgEl("g", { class: "labels" }, root);

  for (let h = 0; h < data.n_head; h++) {
    const sq = svgEl("rect", {
      x: 8 + h * 20, y: 8, width: 16, height: 16, rx: 3, class: "head", "data-h": h,
      fill: HEAD_COLOURS[h % HEAD_COLOURS.length], stroke: "#333", cursor: "pointer",
    }, squares);
    svgEl("title", {}, sq).textContent = `head ${h}`;
    sq.addEventListener("click", () => {
      if (shownHeads.has(h)) shownHeads.delete(h);
      else shownHeads.add(h);
      draw();
    });
  }
  svgText(squares, 12 + data.n_head * 20, 21, "heads (click to show or hide)", {
    "font-size": 11, fill: "#555",
  });
  for (const [side, x, anchor] of [["query", left - 6, "end"], ["key", right + 6, "start"]]) {
    data.tokens.forEach((token, i) => {
      const label = svgText(labels, Number(x), top + i * row + 5, quote(token), {
        "text-anchor": String(anchor), "font-family": MONO, "font-size": font,
        class: `token ${side}`, "data-i": i, cursor: "default",
      });
      label.addEventListener("mouseenter", () => { hover = { side: String(side), i }; paint(); });
      label.addEventListener("mouseleave", () => { hover = null; paint(); });
    });
  }
  size(root, right + widest + 16, top + T * row);

  function draw() {
    lines.textContent = "";
    const L = data.layers.indexOf(layer);
    for (const h of [...shownHeads].sort((a, b) => a - b)) {
      if (h >= data.n_head) continue;
      data.patterns[L][h].forEach((weights, q) => weights.forEach((w, k) => {
        if (w < MIN_WEIGHT) return;
        svgEl("line", {
          x1: left, y1: top + q * row, x2: right, y2: top + k * row, "data-h": h,
          "data-q": q, "data-k": k, "data-w": w, stroke: HEAD_COLOURS[h % HEAD_COLOURS.length],
          "stroke-width": 2, "stroke-opacity": w, class: "line",
        }, lines);
      }));
    }
    squares.querySelectorAll("rect.head").forEach((sq) => {
      const on = shownHeads.has(Number(sq.getAttribute("data-h")));
      sq.setAttribute("fill-opacity", on ? "1" : "0.15");
    });
    paint();
  }

  // Hovering a token keeps only its lines, at full strength, and writes their weights below.
  function paint() {
    const key = hover === null ? null : hover.side === "query" ? "data-q" : "data-k";
    /** @type {string[]} */
    const parts = [];
    lines.querySelectorAll("line").forEach((line) => {
      const mine = key === null || Number(line.getAttribute(key)) === hover?.i;
      line.setAttribute("visibility", mine ? "visible" : "hidden");
      if (mine && hover) {
        const other = Number(line.getAttribute(hover.side === "query" ? "data-k" : "data-q"));
        const w = Number(line.getAttribute("data-w"));
        parts.push(`h${line.getAttribute("data-h")} ${quote(data.tokens[other])} ${fmt(w)}`);
      }
    });
    labels.querySelectorAll("text").forEach((t) => {
      const on = hover && t.classList.contains(hover.side) &&
        Number(t.getAttribute("data-i")) === hover.i;
      t.setAttribute("font-weight", on ? "bold" : "normal");
    });
    if (hover === null) caption.textContent = `block ${layer}: hover a token to see its lines`;
    else {
      const verb = hover.side === "query" ? "attends to" : "is attended by";
      caption.textContent = `${quote(data.tokens[hover.i])} ${verb}: ${parts.join(", ")}`;
    }
  }

  draw();
  wrap.dataset.ready = "1";
  return {
    /** Show block ``L`` and heads ``heads``. @param {number} L @param {number[]} [heads] */
    show(L, heads) {
      layer = L;
      /** @type {HTMLSelectElement} */ (pick).value = String(L);
      if (heads) { shownHeads.clear(); heads.forEach((h) => shownHeads.add(h)); }
      draw();
    },
  };
}
