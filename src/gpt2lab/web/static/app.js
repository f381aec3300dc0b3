// @ts-check
// The gpt2lab notebook. Each cell asks the server for its numbers when it is first shown, and
// every number comes from the library (gpt2lab/web/app.py calls it); these modules only draw
// them. This one starts the page: the models, the bar's controls.
//
// The modules, by job: api.js (the server), dom.js (helpers), state.js (what the page knows),
// notebook.js (running, the cells), grid.js (step tables, heatmaps, colours), outputs.js
// (bars, lens, sampling, generation), edits.js (edits), download.js (the workbook), types.js
// (the answers' types).

import { api } from "./api.js";
import { $, el, range, showError } from "./dom.js";
import { addDownload } from "./download.js";
import { updateEditsBar } from "./edits.js";
import { restore } from "./explainer.js";
import { run, showUpTo, stopLanding } from "./notebook.js";
import { config, state } from "./state.js";

/** @typedef {import("./types.js").ModelsAnswer} ModelsAnswer */

/** Fills the block list and the model's description for the chosen model. */
function fillLayers() {
  const { n_layer, n_head, n_embd, n_positions } = config();
  const model = state.models[$("#model").value];
  $("#layer").replaceChildren(...range(n_layer).map((l) => el("option", { value: l }, String(l))));
  const millions = (model.parameters / 1e6).toFixed(1);
  $("#model-info").textContent =
    `${n_layer} blocks · ${n_head} heads · ${n_embd} wide · context ${n_positions} · ` +
    `${millions}M parameters`;
}

/** Keeps --bar, the sticky bar's height (it wraps on a narrow window), for scroll-padding. */
function trackBar() {
  const bar = $("#top");
  const set = () => document.documentElement.style.setProperty("--bar", `${bar.offsetHeight}px`);
  new ResizeObserver(set).observe(bar);
  set();
}

/** Loads the models, then wires the bar; Run is on only once the models are known. */
async function start() {
  trackBar();
  state.intro = $("#cells .intro");
  for (const kind of ["wheel", "touchmove", "keydown"]) {
    window.addEventListener(kind, stopLanding, { passive: true });
  }
  /** @type {ModelsAnswer} */
  const answer = await api("/api/models");
  state.limits = answer.limits;
  for (const model of answer.models) state.models[model.name] = model;
  $("#model").replaceChildren(
    ...answer.models.map((m) => el("option", { value: m.name }, m.name)),
  );
  fillLayers();
  $("#model").addEventListener("change", () => {
    fillLayers();
    state.edits = [];
    if (state.run) run(false);
  });
  $("#layer").addEventListener("change", () => state.run && run(true));
  $("#prompt-form").addEventListener("submit", (/** @type {Event} */ event) => {
    event.preventDefault();
    run(false);
  });
  $("#prompt").addEventListener("keydown", (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run(false);
  });
  $("#next-cell").addEventListener("click", () => showUpTo(state.shown));
  $("#run-to").addEventListener("change", (/** @type {Event} */ event) =>
    showUpTo(Number(/** @type {HTMLSelectElement} */ (event.target).value)),
  );
  $("#run-all").addEventListener("click", () => showUpTo(state.cells.length - 1));
  $("#rerun").addEventListener("click", () => run(true));
  $("#clear-edits").addEventListener("click", () => {
    state.edits = [];
    run(true);
  });
  updateEditsBar();
  addDownload();
  $("#run").disabled = false; // only now are the models known
  await restore(); // a link's model, prompt, block, cell and edits
  window.addEventListener("hashchange", () => restore().catch(showError)); // a link pasted
}

start().catch(showError);
