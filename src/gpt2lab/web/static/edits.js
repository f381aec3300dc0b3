// @ts-check
// Edits: the bar of edits the next run uses, the cell that adds them, and the comparison of
// the next-token probabilities without and with them.

import { api } from "./api.js";
import { $, el, note, pct, quote, range, select } from "./dom.js";
import { featuresSection } from "./features.js";
import { actions, config, state, tokenText } from "./state.js";

/** @typedef {import("./types.js").Edit} Edit */
/** @typedef {import("./types.js").EditAnswer} EditAnswer */
/** @typedef {import("./state.js").Cell} Cell */

/**
 * A list of edits as a string to compare.
 * @param {Edit[]} edits
 */
const editsKey = (edits) => JSON.stringify(edits);

/**
 * An edit in words, for the bar and the notes.
 * @param {Edit} edit
 */
export function describeEdit(edit) {
  switch (edit.kind) {
    case "ablate_head":
      return `ablate head ${edit.layer}.${edit.head} (${edit.how})`;
    case "ablate_mlp":
      return `ablate MLP ${edit.layer} (${edit.how})`;
    case "scale_neuron":
      return `neuron ${edit.layer}.${edit.neuron} × ${edit.factor}`;
    case "steer":
      return (
        `steer ${edit.layer}: ${quote(edit.positive)} − ${quote(edit.negative)} ` +
        `× ${edit.scale}`
      );
    case "sae_feature":
      return `${edit.sae} feature ${edit.feature}: ${edit.mode} ${edit.strength}`;
    default:
      return `${edit.step}[${edit.index.join(", ")}] = ${edit.value}`;
  }
}

/** Draws the bar of edits; Re-run is on when they differ from the shown run's. */
export function updateEditsBar() {
  const applied = state.run ? editsKey(state.run.request.edits) : "[]";
  const none = state.edits.length === 0 ? [el("span", { class: "muted" }, "none")] : [];
  $("#edits").replaceChildren(
    ...none,
    ...state.edits.map((edit, i) =>
      el(
        "span",
        { class: "chip", title: JSON.stringify(edit) },
        describeEdit(edit),
        el("button", { type: "button", title: "remove", onclick: () => removeEdit(i) }, "×"),
      ),
    ),
  );
  $("#rerun").disabled = !state.run || editsKey(state.edits) === applied;
  $("#clear-edits").disabled = state.edits.length === 0;
}

/**
 * Adds an edit for the next run.
 * @param {Edit} edit
 */
export function addEdit(edit) {
  state.edits.push(edit);
  updateEditsBar();
}

/**
 * Removes the i-th edit.
 * @param {number} i
 */
function removeEdit(i) {
  state.edits.splice(i, 1);
  updateEditsBar();
}

const EDIT_NOTE =
  "Each edit replaces the value at one step as the forward pass goes by; everything before " +
  "that step stays the same, everything after it is computed again. Add edits, then re-run: " +
  "every cell above shows the edited run, and this cell compares the next-token probabilities.";

/**
 * The last cell: a form per kind of edit, and the comparison.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
export function renderEdit(cell, body) {
  const { n_layer, n_head, n_embd } = config();
  /** @type {[string, string][]} */
  const layers = range(n_layer).map((l) => [String(l), `block ${l}`]);
  /** @type {[string, string][]} */
  const hows = [
    ["zero", "to zero"],
    ["mean", "to its mean"],
  ];
  const how = () => select(hows, "zero");
  /** @type {(value: string, attrs?: object) => any} */
  const number = (value, attrs = {}) => el("input", { type: "number", value, ...attrs });
  /** @param {string} value */
  const text = (value) => el("input", { type: "text", value, size: 10 });
  /** @type {[string, string][]} */
  const heads = range(n_head).map((h) => [String(h), `head ${h}`]);

  const head = { layer: select(layers, "0"), head: select(heads, "0"), how: how() };
  const mlp = { layer: select(layers, "0"), how: how() };
  const neuron = {
    layer: select(layers, "0"),
    neuron: number("0", { min: 0, max: 4 * n_embd - 1 }),
    factor: number("0", { step: 0.5 }),
  };
  const steer = {
    layer: select(layers, String(Math.floor(n_layer / 2))),
    positive: text(" happy"),
    negative: text(" sad"),
    scale: number("4", { step: 0.5 }),
  };
  /** @type {(label: string, make: () => Edit) => any} */
  const add = (label, make) =>
    el("button", { type: "button", "data-add": label, onclick: () => addEdit(make()) }, "Add");

  const forms = el(
    "div",
    { class: "edit-forms" },
    el("b", {}, "Ablate a head"),
    el(
      "div",
      { class: "controls", "data-form": "ablate_head" },
      head.layer,
      head.head,
      head.how,
      add("ablate_head", () => ({
        kind: "ablate_head",
        layer: Number(head.layer.value),
        head: Number(head.head.value),
        how: head.how.value,
      })),
    ),
    el("b", {}, "Ablate an MLP"),
    el(
      "div",
      { class: "controls" },
      mlp.layer,
      mlp.how,
      add("ablate_mlp", () => ({
        kind: "ablate_mlp",
        layer: Number(mlp.layer.value),
        how: mlp.how.value,
      })),
    ),
    el("b", {}, "Scale a neuron"),
    el(
      "div",
      { class: "controls" },
      neuron.layer,
      el("label", {}, "neuron ", neuron.neuron),
      el("label", {}, "× ", neuron.factor),
      add("scale_neuron", () => ({
        kind: "scale_neuron",
        layer: Number(neuron.layer.value),
        neuron: Number(neuron.neuron.value),
        factor: Number(neuron.factor.value),
      })),
    ),
    el("b", {}, "Steer"),
    el(
      "div",
      { class: "controls" },
      steer.layer,
      el("label", {}, "+ ", steer.positive),
      el("label", {}, "− ", steer.negative),
      el("label", {}, "× ", steer.scale),
      add("steer", () => ({
        kind: "steer",
        layer: Number(steer.layer.value),
        positive: steer.positive.value,
        negative: steer.negative.value,
        scale: Number(steer.scale.value),
      })),
    ),
    ...featuresSection(addEdit),
    el("b", {}, "Set one value"),
    el("div", { class: "note" }, "double-click a number in any step's table above and press Enter"),
  );
  const compare = el("div", { class: "compare" }, note("computing…"));
  const rerun = el(
    "button",
    { type: "button", class: "primary", onclick: () => actions.run(true) },
    "Re-run with edits",
  );
  body.replaceChildren(note(EDIT_NOTE), forms, el("div", { class: "controls" }, rerun), compare);
  return renderComparison(compare);
}

/**
 * The next-token probabilities without and with the shown run's edits, with bars.
 * @param {HTMLElement} out
 */
async function renderComparison(out) {
  const run = /** @type {import("./types.js").Run} */ (state.run);
  if (run.request.edits.length === 0) {
    out.replaceChildren(note("No edits in the shown run yet."));
    return;
  }
  /** @type {EditAnswer} */
  const answer = await api("/api/edit", { ...run.request, k: 8 });
  const top = Math.max(...answer.rows.map((row) => Math.max(row.before, row.after)));
  /** @type {(p: number, cls: string) => any} */
  const bar = (p, cls) =>
    el(
      "div",
      { class: "bar-track thin" },
      el("i", { class: cls, style: `width: ${(100 * p) / top}%` }),
    );
  const rows = answer.rows.map((row) => {
    const change = row.after - row.before;
    return el(
      "tr",
      { "data-token": row.id },
      el("td", {}, tokenText(row.id, row.token)),
      el("td", {}, pct(row.before)),
      el("td", {}, pct(row.after)),
      el(
        "td",
        { class: change >= 0 ? "up" : "down" },
        `${change >= 0 ? "+" : "−"}${pct(Math.abs(change))}`,
      ),
      el("td", {}, bar(row.before, ""), bar(row.after, "after")),
    );
  });
  const head = ["token", "before", "after", "change", "before / after"].map((h) =>
    el("th", {}, h),
  );
  const edits = run.request.edits.map(describeEdit).join(", ");
  out.replaceChildren(
    el("p", {}, `Next-token probabilities without and with ${edits}:`),
    el(
      "table",
      { class: "plain compare" },
      el("thead", {}, el("tr", {}, head)),
      el("tbody", {}, rows),
    ),
  );
}
