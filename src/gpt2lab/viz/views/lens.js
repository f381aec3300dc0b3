// @ts-check
// The logit lens as a grid: a row per point of the residual stream, a column per position;
// each cell the most likely next token if the model stopped there, coloured by its
// probability, or, with a target token, by the target's rank (0 = the top token).

import { FONT, MONO, blues, fmt, frame, htmlEl, ink, quote, size, svgEl, svgText, textWidth }
  from "./common.js";

/**
 * @typedef {object} LensData
 * @property {string[]} points short names of the points (rows)
 * @property {string[]} tokens
 * @property {string[][][]} top_tokens [point][position][k]
 * @property {number[][][]} top_probs [point][position][k]
 * @property {number[][] | null} target_rank [point][position], -1 where there is no target
 * @property {string[] | null} target_tokens [position], the target's text ("" for none)
 */

// A rank's colour fades over 5 decades: log10 of GPT-2's 50,257 tokens is 4.7.
const RANK_DECADES = 5;

/** @param {number} rank */
const rankShade = (rank) => 1 - Math.min(1, Math.log10(rank + 1) / RANK_DECADES);

/**
 * @param {LensData} data
 * @param {HTMLElement} container
 */
export function logitLens(data, container) {
  const { wrap, controls, root, caption } = frame(container, "logit lens", "lens");
  const font = 12;
  const byRank = { on: false };
  if (data.target_rank) {
    const toggle = htmlEl("label", {}, "", controls);
    const box = htmlEl("input", { type: "checkbox", class: "by-rank" }, "", toggle);
    toggle.append(" colour by the target's rank");
    box.addEventListener("change", () => {
      byRank.on = /** @type {HTMLInputElement} */ (box).checked;
      paint();
    });
  }
  const texts = [...data.top_tokens.flat().map((c) => quote(c[0])), ...data.tokens.map(quote)];
  const ranks = data.target_rank ? data.target_rank.flat() : [];
  const column = Math.max(64, ...texts.map((t) => textWidth(root, t, font) + 10),
    ...ranks.map((r) => textWidth(root, `0.000 · rank ${r}`, 10, FONT) + 10));
  const left = Math.max(...data.points.map((p) => textWidth(root, p, font, MONO))) + 14;
  const [top, row] = [26, 30];
  data.tokens.forEach((token, t) => {
    svgText(root, left + t * column + column / 2, 16, quote(token), {
      "text-anchor": "middle", "font-family": MONO, "font-size": font, "font-weight": "bold",
    });
  });
  /** @type {{g: SVGElement, p: number, t: number}[]} */
  const cells = [];
  data.points.forEach((point, p) => {
    const y = top + p * row;
    svgText(root, left - 6, y + 18, point, {
      "text-anchor": "end", "font-family": MONO, "font-size": font,
    });
    data.tokens.forEach((_, t) => {
      const x = left + t * column;
      const g = svgEl("g", { class: "cell", "data-p": p, "data-t": t }, root);
      svgEl("rect", { x, y, width: column - 2, height: row - 2, stroke: "none" }, g);
      svgText(g, x + column / 2 - 1, y + 13, quote(data.top_tokens[p][t][0]), {
        "text-anchor": "middle", "font-family": MONO, "font-size": font, class: "top",
      });
      const rank = data.target_rank ? data.target_rank[p][t] : -1;
      const note = rank >= 0 ? `${fmt(data.top_probs[p][t][0])} · rank ${rank}`
        : fmt(data.top_probs[p][t][0]);
      svgText(g, x + column / 2 - 1, y + 25, note, {
        "text-anchor": "middle", "font-size": 10, class: "note",
      });
      g.addEventListener("mouseenter", () => {
        /** @type {SVGElement} */ (g.firstChild).setAttribute("stroke", "#d62728");
        /** @type {SVGElement} */ (g.firstChild).setAttribute("stroke-width", "2");
        const probs = data.top_probs[p][t];
        const list = data.top_tokens[p][t].map((c, j) => `${quote(c)} ${fmt(probs[j])}`);
        const target = rank >= 0 && data.target_tokens
          ? `; ${quote(data.target_tokens[t])} is ranked ${rank}` : "";
        caption.textContent = `${point} at ${quote(data.tokens[t])}: ${list.join(", ")}${target}`;
      });
      g.addEventListener("mouseleave", () => {
        /** @type {SVGElement} */ (g.firstChild).setAttribute("stroke", "none");
        caption.textContent = "hover a cell for its top tokens";
      });
      cells.push({ g, p, t });
    });
  });

  function paint() {
    for (const { g, p, t } of cells) {
      const rank = data.target_rank ? data.target_rank[p][t] : -1;
      const shade = byRank.on ? (rank < 0 ? 0 : rankShade(rank)) : data.top_probs[p][t][0];
      const fill = byRank.on && rank < 0 ? "#fafafa" : blues(shade);
      /** @type {SVGElement} */ (g.firstChild).setAttribute("fill", fill);
      g.querySelectorAll("text").forEach((text) => text.setAttribute("fill", ink(shade)));
    }
  }
  paint();
  size(root, left + data.tokens.length * column + 8, top + data.points.length * row + 6);
  caption.textContent = "hover a cell for its top tokens";
  wrap.dataset.ready = "1";
  return {};
}
