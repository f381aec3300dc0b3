// @ts-check
// The model as a diagram: embeddings, the blocks (one opened, its named steps in the order the
// forward pass computes them, grouped as layer norm, attention, MLP and residual stream), the
// final layer norm, the unembedding and sampling. Click a step to read its shape, formula and
// values; the step marked "you are here" is where the web app's notebook stands.

import { MONO, blues, fmt, frame, htmlEl, ink, size, svgEl, svgText } from "./common.js";

/**
 * @typedef {object} MapStep
 * @property {string} name with {L} for the block
 * @property {string} title
 * @property {string} shape with the model's sizes
 * @property {string} formula
 * @property {string} group embeddings, resid, ln1, attn, ln2, mlp, ln_final, unembed, sampling
 * @property {string} label a short name for its box
 *
 * @typedef {object} StepPreview
 * @property {number[]} shape
 * @property {{mean: number, std: number, min: number, max: number}} stats
 * @property {string[]} rows
 * @property {string[]} columns
 * @property {(number | string)[][]} values
 *
 * @typedef {object} MapData
 * @property {{name: string, n_layer: number, n_head: number, n_embd: number,
 *   vocab_size: number, norm: string, post_norm: boolean}} model
 * @property {MapStep[]} steps
 * @property {number} layer the block opened first
 * @property {string | null} here a full step name, or null
 * @property {string | null} selected a full step name, or null
 * @property {Record<string, StepPreview>} values previews of full step names
 */

const GROUPS = {
  embeddings: "embeddings", resid: "residual stream", ln1: "layer norm 1", attn: "attention",
  ln2: "layer norm 2", mlp: "MLP", ln_final: "final layer norm", unembed: "unembedding",
  sampling: "sampling",
};
const TINTS = {
  embeddings: "#e8f1fa", resid: "#f2f2f2", ln1: "#fdf0dc", attn: "#e6f4e6", ln2: "#fdf0dc",
  mlp: "#f7e6f2", ln_final: "#fdf0dc", unembed: "#e8f1fa", sampling: "#fff6d6",
};

/**
 * @param {MapData} data
 * @param {HTMLElement} container
 * @param {{onSelect?: (name: string) => void}} [options]
 */
export function modelMap(data, container, options = {}) {
  const { wrap, controls, root, caption } = frame(container, "model map", "map");
  const m = data.model;
  let layer = data.layer;
  let here = data.here;
  let selected = data.selected;
  htmlEl("span", {}, `${m.name || "GPT-2"}: ${m.n_layer} blocks, ${m.n_head} heads, ` +
    `width ${m.n_embd}, ${m.vocab_size} tokens`, controls);
  const diagram = svgEl("g", {}, root);
  const panel = svgEl("g", { class: "panel" }, root);
  const full = (/** @type {string} */ name) => name.replace("{L}", String(layer));

  function draw() {
    diagram.textContent = "";
    // Wide enough for the longest row of steps (LLaMA's attention adds rot_q and rot_k).
    const boxWidth = (/** @type {MapStep} */ s) => Math.max(44, s.label.length * 7.5 + 12);
    const rowWidth = (/** @type {string} */ group) => data.steps
      .filter((s) => s.group === group).reduce((w, s) => w + boxWidth(s) + 6, 150);
    const width = Math.max(640, ...Object.keys(GROUPS).map(rowWidth));
    let y = 8;
    /** @param {string} text @param {string} group @param {number} h */
    const band = (text, group, h) => {
      svgEl("rect", { x: 8, y, width, height: h, rx: 6, fill: TINTS[group] ?? "#eee" }, diagram);
      svgText(diagram, 16, y + 17, text, { "font-size": 12, "font-weight": "bold", fill: "#444" });
    };
    /** @param {MapStep[]} steps @param {number} x0 */
    const boxes = (steps, x0) => {
      let x = x0;
      for (const step of steps) {
        const name = full(step.name);
        const w = boxWidth(step);
        const g = svgEl("g", { class: "step", "data-step": name, cursor: "pointer" }, diagram);
        const on = name === selected;
        svgEl("rect", {
          x, y: y + 5, width: w, height: 22, rx: 4, fill: on ? "#3b78b5" : "white",
          stroke: name === here ? "#e6550d" : "#888", "stroke-width": name === here ? 3 : 1,
        }, g);
        svgText(g, x + w / 2, y + 20, step.label, {
          "text-anchor": "middle", "font-family": MONO, "font-size": 12,
          fill: on ? "white" : "black",
        });
        const tip = `${name}\n${step.title}\n${step.shape}: ${step.formula}`;
        svgEl("title", {}, g).textContent = tip;
        g.addEventListener("click", () => {
          selected = name;
          options.onSelect?.(name);
          draw();
        });
        if (name === here) {
          svgText(diagram, x + w / 2, y + 5, "▼", {
            "text-anchor": "middle", "font-size": 10, fill: "#e6550d", class: "here",
          });
        }
        x += w + 6;
      }
    };
    /** @param {string} group */
    const stepsOf = (group) => data.steps.filter((s) => s.group === group);
    const outer = (/** @type {string} */ group, /** @type {string} */ text) => {
      if (!stepsOf(group).length) return; // e.g. no final norm (GPT-1)
      band(text, group, 48);
      y += 14;
      boxes(stepsOf(group), 150);
      y += 42;
    };
    outer("embeddings", "text → ids → embeddings");
    // The blocks: one button each; the opened one lists its steps by group.
    // Post-norm blocks (GPT-1) normalize after each sum, so each norm follows its sublayer.
    const inner = m.post_norm ? ["resid", "attn", "ln1", "mlp", "ln2"]
      : ["resid", "ln1", "attn", "ln2", "mlp"];
    const rows = inner.length;
    svgEl("rect", {
      x: 8, y, width, height: 40 + rows * 34, rx: 6, fill: "white", stroke: "#999",
    }, diagram);
    svgText(diagram, 16, y + 18, "blocks", { "font-size": 12, "font-weight": "bold" });
    if (here) {
      svgText(diagram, width, y + 18, `▼ you are here: ${here}`, {
        "text-anchor": "end", "font-size": 11, fill: "#e6550d", "font-family": MONO,
      });
    }
    for (let L = 0; L < m.n_layer; L++) {
      const per = Math.min(30, (width - 330) / m.n_layer);
      const g = svgEl("g", { class: "block", "data-layer": L, cursor: "pointer" }, diagram);
      svgEl("rect", {
        x: 70 + L * per, y: y + 5, width: per - 3, height: 18, rx: 3,
        fill: L === layer ? "#3b78b5" : "#ddd",
      }, g);
      svgText(g, 70 + L * per + (per - 3) / 2, y + 18, String(L), {
        "text-anchor": "middle", "font-size": 10, fill: L === layer ? "white" : "black",
      });
      g.addEventListener("click", () => {
        layer = L;
        if (selected?.startsWith("blocks.")) {
          selected = selected.replace(/^blocks\.\d+/, `blocks.${L}`);
        }
        draw();
      });
    }
    y += 32;
    for (const group of inner) {
      const fill = TINTS[group];
      svgEl("rect", { x: 16, y, width: width - 16, height: 32, rx: 4, fill }, diagram);
      const label = GROUPS[group].replace("layer norm", m.norm);
      svgText(diagram, 24, y + 20, label, { "font-size": 12, fill: "#444" });
      boxes(stepsOf(group), 130);
      y += 34;
    }
    y += 10;
    outer("ln_final", `final ${m.norm}`);
    outer("unembed", "unembedding");
    outer("sampling", "sampling → next token");
    drawPanel(width + 24);
    size(root, width + 24 + 440, Math.max(y, 300));
  }

  /** The chosen step: its name, title, shape, formula and (when given) its values. */
  function drawPanel(/** @type {number} */ x) {
    panel.textContent = "";
    if (!selected) {
      svgText(panel, x, 24, "click a step to see its values", { fill: "#555" });
      caption.textContent = "click a step; click a block's number to open it";
      return;
    }
    const name = selected;
    const step = data.steps.find((s) => full(s.name) === name);
    let y = 20;
    const line = (/** @type {string} */ text, /** @type {Record<string, string | number>} */ a) => {
      svgText(panel, x, y, text, a);
      y += 18;
    };
    line(name, { "font-family": MONO, "font-weight": "bold", class: "name" });
    if (step) {
      line(step.title, {});
      line(`${step.shape}  ${step.formula}`, { "font-size": 12, fill: "#333" });
    }
    const v = data.values[name];
    if (!v) {
      line("(values not in this view: trace this step to see them)", {
        fill: "#777", "font-size": 12,
      });
      caption.textContent = name;
      return;
    }
    const s = v.stats;
    const small = { "font-size": 12 };
    line(`shape [${v.shape.join(", ")}]  mean ${fmt(s.mean)}  std ${fmt(s.std)}`, small);
    line(`min ${fmt(s.min)}  max ${fmt(s.max)}`, small);
    const numbers = v.values.flat().map((c) => (typeof c === "number" ? Math.abs(c) : 0));
    const largest = Math.max(...numbers, 1e-12);
    const [cw, rh] = [typeof v.values[0]?.[0] === "string" ? 110 : 48, 17];
    v.columns.forEach((c, j) => {
      svgText(panel, x + 104 + j * cw, y + 8, c, { "font-size": 10, fill: "#555" });
    });
    y += 12;
    const table = svgEl("g", { class: "values" }, panel);
    v.values.forEach((cells, i) => {
      svgText(table, x, y + 12, v.rows[i], { "font-size": 10, "font-family": MONO });
      cells.forEach((c, j) => {
        const t = typeof c === "number" ? Math.abs(c) / largest : 0;
        const box = { x: x + 100 + j * cw, y, width: cw - 2, height: rh - 2, fill: blues(t) };
        svgEl("rect", box, table);
        svgText(table, x + 102 + j * cw, y + 12, typeof c === "number" ? fmt(c) : c, {
          "font-size": 10, "font-family": MONO, fill: ink(t), class: "value",
        });
      });
      y += rh;
    });
    caption.textContent = `${name}: ${step ? step.title : ""}`;
  }

  draw();
  wrap.dataset.ready = "1";
  return {
    /** Mark a step as "you are here" (null: none). @param {string | null} name */
    setHere(name) {
      here = name;
      const L = name?.match(/^blocks\.(\d+)\./);
      if (L) layer = Number(L[1]);
      draw();
    },
    /** Open a step's values. @param {string} name */
    select(name) {
      selected = name;
      const L = name.match(/^blocks\.(\d+)\./);
      if (L) layer = Number(L[1]);
      draw();
    },
  };
}
