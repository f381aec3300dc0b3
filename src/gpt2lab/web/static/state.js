// @ts-check
// What the page knows: the models, the shown run, the cells, the edits to apply next.

import { $, quote } from "./dom.js";

/** @typedef {import("./types.js").ModelInfo} ModelInfo */
/** @typedef {import("./types.js").Limits} Limits */
/** @typedef {import("./types.js").Run} Run */
/** @typedef {import("./types.js").Edit} Edit */
/** @typedef {import("./types.js").StepInfo} StepInfo */
/** @typedef {import("./types.js").SamplingAnswer} SamplingAnswer */

export const ROWS = 64; // rows of a step table fetched at a time
export const COLS = 40; // columns fetched at a time
export const EMPTY_PROMPT = "The prompt is empty: type some text, then press Run.";

/**
 * One cell of the notebook; el and shown are set when the cells are built.
 * @typedef {object} Cell
 * @property {string} key
 * @property {string} group
 * @property {string} title
 * @property {StepInfo} [step]
 * @property {(cell: Cell, body: HTMLElement) => Promise<void> | void} render
 * @property {HTMLElement} [el]
 * @property {boolean} [shown]
 */

/**
 * @type {{
 *   models: Record<string, ModelInfo>, limits: Limits, run: Run | null, cells: Cell[],
 *   shown: number, edits: Edit[], sampled: Promise<SamplingAnswer> | null, busy: number,
 *   intro: Element | null, options: Record<string, string>,
 * }}
 */
export const state = {
  models: {}, // name -> {config, parameters, steps}
  limits: /** @type {Limits} */ ({}),
  run: null, // the last /api/run answer, with the request that made it
  cells: [],
  shown: 0, // how many cells are shown
  edits: [], // the edits the next run will use
  sampled: null, // promise of the /api/sampling answer for the shown run
  busy: 0,
  intro: null, // the paragraph the empty page shows
  options: {}, // what the view cells colour by and explain (viewcells.js), as the address has it
};

/**
 * What the cells ask the notebook to do. The notebook fills it in when it loads, so that the
 * cells' modules need not import the notebook, which imports them.
 * The explainer (explainer.js) adds its own: ``ran`` after a run, ``landed`` on a cell,
 * ``go`` to a step's cell, ``chose`` after a view cell's options change.
 * @type {{
 *   run: (keepCells: boolean) => Promise<void>, ran: () => void,
 *   landed: (key: string) => void, go: (key: string) => Promise<void>, chose: () => void,
 * }}
 */
export const actions = {
  run: async () => {},
  ran: () => {},
  landed: () => {},
  go: async () => {},
  chose: () => {},
};

/** The config of the model chosen in the bar. */
export const config = () => state.models[$("#model").value].config;

/**
 * A token as the page writes it. A token whose bytes are not whole UTF-8 characters decodes
 * to "\ufffd", which says nothing: it is labelled, with its bytes.
 * @param {number} id
 * @param {string} text
 */
export function tokenText(id, text) {
  const model = state.models[state.run?.request.model ?? $("#model").value];
  const bytes = model?.partial_tokens[id];
  return bytes === undefined ? quote(text) : `${quote(text)} (partial UTF-8: bytes ${bytes})`;
}

/** Shows "computing…" while a request is out. */
export function setStatus() {
  const status = $("#status");
  status.classList.toggle("busy", state.busy > 0);
  status.textContent = state.busy > 0 ? "computing…" : "";
}
