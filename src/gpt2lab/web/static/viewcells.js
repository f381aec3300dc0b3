// @ts-check
// The cells drawn by the interactive views of gpt2lab.viz.views (the same JavaScript a
// Jupyter notebook runs, served at /views): attention as lines between tokens, every head,
// the text coloured by an activation, and saliency. Their data comes from /api/view, which
// builds it with the library, as a notebook does. The options chosen in the last two are in
// state.options, which the address holds (explainer.js).

import { api } from "./api.js";
import { el, note, select } from "./dom.js";
import { actions, state } from "./state.js";

/** @typedef {import("./state.js").Cell} Cell */

/**
 * The data of one view for the shown run.
 * @param {string} view "map", "attention", "heads", "text" or "saliency"
 * @param {Record<string, string | number | null>} [options] the view's fields of the request
 * @returns {Promise<any>}
 */
export function viewData(view, options = {}) {
  const request = /** @type {import("./types.js").Run} */ (state.run).request;
  return api("/api/view", { ...request, view, ...options });
}

// What each colouring of the text reads, beside "color" (the request's field names).
/** @type {Record<string, string[]>} */
const COLOR_FIELDS = { neuron: ["neuron"], head: ["head"], direction: ["token"],
  feature: ["sae", "feature"] };
const NUMBERS = new Set(["neuron", "head", "feature", "position"]);
/** The options of the view cells, as the address names them. */
export const VIEW_OPTIONS = ["color", "neuron", "head", "token", "sae", "feature", "target",
  "position"];

/**
 * The options of a cell that the address holds (none for other cells).
 * @param {string} key the cell's key
 * @returns {Record<string, string>}
 */
export function cellOptions(key) {
  const o = state.options;
  /** @type {string[]} */
  let names = [];
  if (key === "colored-text") names = ["color", ...COLOR_FIELDS[o.color ?? "neuron"] ?? []];
  if (key === "saliency") names = ["target", "position"];
  return Object.fromEntries(names.filter((n) => o[n]).map((n) => [n, o[n]]));
}

/**
 * The request's fields for options: numbers as numbers, an empty box as null (the server's
 * default where there is one, else its one-line refusal).
 * @param {Record<string, string>} options
 */
function fields(options) {
  /** @param {[string, string]} option */
  const value = ([name, text]) => {
    if (text.trim() === "") return null;
    return NUMBERS.has(name) ? Number(text) : text;
  };
  return Object.fromEntries(Object.entries(options).map((o) => [o[0], value(o)]));
}

/**
 * Draws a view with the options of a form: the view or the server's one-line error in
 * ``host``; the options are kept (and the address follows) either way.
 * @param {HTMLElement} host
 * @param {string} view
 * @param {Record<string, string>} options
 * @param {(data: any, host: HTMLElement) => void} draw
 */
async function drawWith(host, view, options, draw) {
  Object.assign(state.options, options);
  actions.chose();
  host.replaceChildren(note("computing…"));
  try {
    const data = await viewData(view, fields(options));
    host.replaceChildren();
    draw(data, host);
  } catch (error) {
    host.replaceChildren(note(/** @type {Error} */ (error).message, "note error"));
  }
}

/**
 * A labelled input of the cell's form, filled from state.options.
 * @param {string} label
 * @param {string} name the option
 * @param {Record<string, any>} attrs
 */
function field(label, name, attrs) {
  const input = el("input", { ...attrs, name, value: state.options[name] ?? attrs.value ?? "" });
  return el("label", {}, `${label} `, input);
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

/**
 * The prompt coloured by one activation of the page's block: an MLP neuron, the norm of a
 * head's output, the residual stream along a token's embedding, or an SAE feature.
 * @param {Cell} _cell
 * @param {HTMLElement} body
 */
export function renderColoredText(_cell, body) {
  whenSeen(body, () => drawText(body));
}

/** @param {HTMLElement} body */
async function drawText(body) {
  const { coloredText } = await viewModule("text.js");
  const request = /** @type {import("./types.js").Run} */ (state.run).request;
  const saes = state.models[request.model].saes || [];
  const block = `block ${request.layer}`;
  /** @type {[string, string][]} */
  const colors = [
    ["neuron", `a neuron (${block}'s MLP)`],
    ["head", `a head's output norm (${block})`],
    ["direction", `a token's direction (after ${block})`],
  ];
  if (saes.length) colors.push(["feature", "an SAE feature"]);
  const color = select(colors, state.options.color ?? "neuron", () => choose());
  color.name = "color";
  const sae = select(saes.map((s) => [s.name, s.name]), state.options.sae ?? saes[0]?.name);
  sae.name = "sae";
  const { n_head } = state.models[request.model].config;
  /** @type {Record<string, HTMLElement>} */
  const inputs = {
    neuron: field("neuron", "neuron", { type: "number", min: 0, value: "0" }),
    head: field("head", "head", { type: "number", min: 0, max: n_head - 1, value: "0" }),
    direction: field("token", "token", { type: "text", value: " fast", size: 12 }),
    feature: el("label", {}, "SAE ", sae, " ",
      field("feature", "feature", { type: "number", min: 0, value: "0" })),
  };
  const host = el("div");
  const form = el("form", { class: "controls" }, el("label", {}, "colour by ", color),
    Object.values(inputs), el("button", { type: "submit" }, "Show"));
  const draw = () => {
    /** @type {Record<string, string>} */
    const options = { color: color.value };
    for (const name of COLOR_FIELDS[color.value]) options[name] = form.elements[name].value;
    return drawWith(host, "text", options, coloredText);
  };
  const choose = () => {
    for (const [name, input] of Object.entries(inputs)) input.hidden = name !== color.value;
  };
  form.addEventListener("submit", (/** @type {Event} */ event) => {
    event.preventDefault();
    draw();
  });
  choose();
  body.replaceChildren(
    note("Each token on a background coloured by one value at its position: blue above 0, " +
      "red below. Hover a token for its value."),
    form, host);
  await draw();
}

/**
 * Saliency: which input tokens made an output token likely, by gradient x input and by
 * ablation.
 * @param {Cell} _cell
 * @param {HTMLElement} body
 */
export function renderSaliency(_cell, body) {
  whenSeen(body, () => drawSaliency(body));
}

/** @param {HTMLElement} body */
async function drawSaliency(body) {
  const { saliency } = await viewModule("saliency.js");
  const host = el("div");
  const edited = el("p", { class: "note", hidden: true },
    "Saliency reads the model without the edits.");
  const form = el("form", { class: "controls" },
    field("output token", "target", { type: "text", placeholder: "the most likely", size: 14 }),
    field("read at position", "position", { type: "number", min: 0, placeholder: "last" }),
    el("button", { type: "submit" }, "Show"));
  const draw = () => drawWith(host, "saliency", {
    target: form.elements.target.value, position: form.elements.position.value,
  }, (/** @type {any} */ data, /** @type {HTMLElement} */ into) => {
    edited.hidden = !data.edits_left_out;
    saliency(data, into);
  });
  form.addEventListener("submit", (/** @type {Event} */ event) => {
    event.preventDefault();
    draw();
  });
  body.replaceChildren(
    note("How much each input token made the output token likely there. Gradient x input: " +
      "∂ log p / ∂e · e, the first-order estimate; ablation: log p minus log p with the " +
      "token's embedding set to 0, one run per token. Blue raised it, red lowered it; hover a " +
      "token for both scores."),
    form, edited, host);
  await draw();
}
