// @ts-check
// The page as an explainer: the model map (gpt2lab.viz.views' modelMap) shows where the
// notebook stands and goes to any step when clicked, and the address holds the state (model,
// prompt, block, cell, edits, and what the view cells colour by), so that a link reopens the
// same view.

import { $, showError } from "./dom.js";
import { run, showUpTo } from "./notebook.js";
import { actions, state } from "./state.js";
import { VIEW_OPTIONS, cellOptions, viewData, viewModule } from "./viewcells.js";

/** @type {{setHere: (name: string | null) => void, select: (name: string) => void} | null} */
let map = null;
let drawing = 0;

/** The model map of the shown run, in the panel above the cells. */
async function drawMap() {
  const ticket = ++drawing;
  const panel = $("#map-panel");
  const [data, { modelMap }] = await Promise.all([viewData("map"), viewModule("model_map.js")]);
  if (ticket !== drawing) return; // a newer run drew it
  panel.hidden = false;
  const host = document.createElement("div");
  panel.replaceChildren(host);
  map = modelMap({ ...data, here: here(), selected: here() }, host, { onSelect: go });
}

/** The step of the current cell, if it is a step. */
function here() {
  const cell = state.cells[Number($("#run-to").value)];
  return cell?.step ? cell.key : null;
}

/**
 * Go to a cell: the step's block first (a re-run with the same edits), then the cell.
 * @param {string} key
 */
export async function go(key) {
  const block = /^blocks\.(\d+)\./.exec(key);
  if (block && block[1] !== $("#layer").value) {
    $("#layer").value = block[1];
    await run(true);
  }
  const index = state.cells.findIndex((cell) => cell.key === key);
  if (index >= 0) showUpTo(index);
}

/** Writes the state into the address (without a new history entry per cell). */
function remember() {
  const request = state.run?.request;
  if (!request) return;
  const params = new URLSearchParams({
    model: request.model, prompt: request.prompt, layer: String(request.layer),
  });
  const cell = state.cells[Number($("#run-to").value)];
  if (cell) params.set("cell", cell.key);
  for (const [name, value] of Object.entries(cell ? cellOptions(cell.key) : {})) {
    params.set(name, value);
  }
  if (request.edits.length) params.set("edits", JSON.stringify(request.edits));
  history.replaceState(null, "", `#${params}`);
}

/** Opens the state in the address, if it holds one: the run, then the cell. */
export async function restore() {
  const params = new URLSearchParams(location.hash.slice(1));
  const prompt = params.get("prompt");
  if (prompt === null) return;
  const model = params.get("model");
  if (model && state.models[model] && model !== $("#model").value) {
    state.run = null; // the model's change handler would re-run the old prompt
    $("#model").value = model;
    $("#model").dispatchEvent(new Event("change"));
  }
  $("#prompt").value = prompt;
  const layer = params.get("layer");
  if (layer !== null) $("#layer").value = layer;
  try {
    state.edits = JSON.parse(params.get("edits") ?? "[]");
  } catch {
    showError(new Error("the address's edits are not valid JSON; they are left out"));
    state.edits = [];
  }
  state.options = {};
  for (const name of VIEW_OPTIONS) {
    const value = params.get(name);
    if (value !== null) state.options[name] = value;
  }
  await run(false);
  const cell = params.get("cell");
  if (cell) await go(cell);
}

actions.ran = () => {
  drawMap().catch(showError);
  remember();
};
actions.landed = (/** @type {string} */ key) => {
  const step = state.cells.find((c) => c.key === key)?.step ? key : null;
  if (map) map.setHere(step);
  if (map && step) map.select(step); // its values beside the map
  remember();
};
actions.go = go;
actions.chose = remember;
