// @ts-check
// SAE features, in the edits cell when the model has a sparse autoencoder: the features most
// active at each token of the prompt, a feature's dashboard, and a steering edit for it.

import { api } from "./api.js";
import { $, el, note, select } from "./dom.js";
import { state } from "./state.js";

/** @typedef {import("./types.js").Edit} Edit */
/** @typedef {import("./types.js").SaeFeaturesAnswer} SaeFeaturesAnswer */
/** @typedef {import("./types.js").SaeFeatureAnswer} SaeFeatureAnswer */

const STRENGTH = 100; // the slider's range, either side of 0; the number box takes up to 1000

/**
 * The features section for the chosen model, or nothing when it has no SAE.
 * @param {(edit: Edit) => void} addEdit adds a steering edit to the bar
 * @returns {any[]}
 */
export function featuresSection(addEdit) {
  const model = $("#model").value;
  const saes = state.models[model].saes || [];
  if (saes.length === 0) return [];
  /** @type {[string, string][]} */
  const options = saes.map((s) => [s.name, `${s.name} (${s.hook_name}, ${s.d_sae} features)`]);
  const sae = select(options, saes[0].name);
  const feature = el("input", { type: "number", value: "0", min: 0, "data-sae": "feature" });
  const slider = el("input", { type: "range", min: -STRENGTH, max: STRENGTH, step: 0.5 });
  const strength = el("input", { type: "number", value: "8", step: 0.5, "data-sae": "strength" });
  slider.value = "8";
  slider.oninput = () => (strength.value = slider.value);
  strength.oninput = () => (slider.value = strength.value);
  const mode = select(
    [
      ["add", "add"],
      ["clamp", "clamp"],
    ],
    "add",
  );
  const list = el("div", { class: "sae-features" });
  const dashboard = el("div", { class: "sae-dashboard" });

  /** Draws feature `i`'s dashboard under the list. */
  const open = async (/** @type {number} */ i) => {
    feature.value = String(i);
    dashboard.replaceChildren(note("computing…"));
    /** @type {SaeFeatureAnswer} */
    const answer = await api("/api/sae/feature", { model, sae: sae.value, feature: i });
    dashboard.replaceChildren(
      note(`Feature ${i}: contexts from ${answer.contexts_from}.`),
      el("iframe", {
        srcdoc: answer.html,
        sandbox: "allow-scripts",
        title: `feature ${i}`,
        style: "width: 100%; height: 420px; border: 1px solid #ccc",
      }),
    );
  };

  const listActive = async () => {
    if (!state.run) return;
    list.replaceChildren(note("computing…"));
    /** @type {SaeFeaturesAnswer} */
    const answer = await api("/api/sae/features", {
      model,
      prompt: state.run.request.prompt,
      sae: sae.value,
      k: 5,
    });
    const rows = answer.positions.map((p) =>
      el(
        "tr",
        {},
        el("td", {}, JSON.stringify(p.token)),
        el(
          "td",
          {},
          p.features.map((f) =>
            el(
              "button",
              { type: "button", "data-feature": f.feature, onclick: () => open(f.feature) },
              `#${f.feature} ${f.activation.toFixed(2)}`,
            ),
          ),
        ),
      ),
    );
    list.replaceChildren(el("table", { class: "plain" }, el("tbody", {}, rows)));
  };

  const add = el(
    "button",
    {
      type: "button",
      "data-add": "sae_feature",
      onclick: () =>
        addEdit({
          kind: "sae_feature",
          sae: sae.value,
          feature: Number(feature.value),
          strength: Number(strength.value),
          mode: mode.value,
        }),
    },
    "Add",
  );
  return [
    el("b", {}, "SAE features"),
    el(
      "div",
      { class: "controls" },
      sae,
      el("button", { type: "button", "data-sae": "list", onclick: listActive }, "Active features"),
    ),
    list,
    dashboard,
    el("b", {}, "Steer with a feature"),
    el(
      "div",
      { class: "controls", "data-form": "sae_feature" },
      el("label", {}, "feature ", feature),
      el("label", {}, "strength ", slider, strength),
      mode,
      add,
    ),
  ];
}
