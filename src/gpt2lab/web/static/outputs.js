// @ts-check
// Reading the output: bar charts, the logit lens, sampling, and the next token with
// generation.

import { api, events } from "./api.js";
import { $, el, note, pct, renderCell } from "./dom.js";
import { describeEdit } from "./edits.js";
import { actions, state, tokenText } from "./state.js";

/** @typedef {import("./types.js").Run} Run */
/** @typedef {import("./types.js").LensAnswer} LensAnswer */
/** @typedef {import("./types.js").SamplingAnswer} SamplingAnswer */
/** @typedef {import("./state.js").Cell} Cell */

/** The shown run: the cells exist only while there is one. */
const shown = () => /** @type {Run} */ (state.run);

/**
 * One bar per item, as long as its value. When some values are negative the bars start at a
 * zero axis in the middle: negative ones go left (blue), positive ones right (red).
 * @param {{label: string, value: number, text: string}[]} items
 * @param {number} [top] the value of a full bar
 */
export function bars(items, top = Math.max(...items.map((item) => Math.abs(item.value)))) {
  top = Math.max(top, 1e-12);
  const signed = items.some((item) => item.value < 0);
  /** @param {number} value */
  const bar = (value) => {
    const size = Math.min(100, (100 * Math.abs(value)) / top);
    if (!signed) return el("i", { style: `width: ${size}%` });
    const side = value < 0 ? "right" : "left";
    const style = `${side}: 50%; width: ${size / 2}%`;
    return el("i", { class: value < 0 ? "neg" : "pos", style });
  };
  return el(
    "div",
    { class: signed ? "bars signed" : "bars" },
    items.flatMap((item) => [
      el("span", { class: "tok" }, item.label),
      el("div", { class: "bar-track" }, bar(item.value)),
      el("span", { class: "num-cell" }, item.text),
    ]),
  );
}

const LENS_NOTE =
  "ln_final(x) @ W_Eᵀ applied to the residual stream after each block, as if the blocks after " +
  "it were removed: the most likely next token at every position. The last row is the model's " +
  "real output. Hover a cell for its top 3. It opens at the last position, the one whose next " +
  "token is not in the prompt; scroll left for the others.";

/**
 * The logit lens: the top token at every block and position.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
export async function renderLens(cell, body) {
  /** @type {LensAnswer} */
  const lens = await api("/api/lens", { ...shown().request, k: 3, points: "post" });
  const ids = shown().ids;
  const head = el(
    "tr",
    {},
    el("th", {}, "read out after"),
    lens.tokens.map((t, i) => el("th", {}, `${i} ${tokenText(ids[i], t)}`)),
  );
  const rows = lens.points.map((point, p) =>
    el(
      "tr",
      {},
      el("th", {}, point.replace("blocks.", "block ").replace(".hook_", " ")),
      lens.top_tokens[p].map((top, t) => {
        const prob = lens.top_probs[p][t][0];
        const topIds = lens.top_ids[p][t];
        const title = top
          .map((tok, k) => `${tokenText(topIds[k], tok)} ${pct(lens.top_probs[p][t][k])}`)
          .join("\n");
        const style = `background: rgb(67 56 202 / ${(0.45 * prob).toFixed(3)})`;
        return el("td", { style, title }, `${tokenText(topIds[0], top[0])} ${pct(prob)}`);
      }),
    ),
  );
  const table = el("table", { class: "plain lens" }, el("thead", {}, head), el("tbody", {}, rows));
  const wrap = el("div", { class: "grid-wrap" }, table);
  body.replaceChildren(note(LENS_NOTE), wrap);
  wrap.scrollLeft = wrap.scrollWidth; // the last position: the prediction of the next token
}

/** The sampling settings of the sampling cell's inputs (empty: null, the server's default). */
function samplingSettings() {
  /** @param {string} id */
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  return {
    temperature: number("#temperature"),
    top_k: number("#top-k"),
    top_p: number("#top-p"),
    seed: number("#seed"),
    greedy: $("#greedy").checked,
  };
}

/**
 * Asks for a sampling of the shown run with the cell's settings; the next-token cell reuses it.
 * @returns {Promise<SamplingAnswer>}
 */
function sample() {
  state.sampled = api("/api/sampling", { ...shown().request, ...samplingSettings(), top: 10 });
  return state.sampled;
}

/**
 * Sampling: the settings, and what each filter does to the likely tokens.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
export async function renderSampling(cell, body) {
  /** @type {(id: string, value: string, attrs?: object) => any} */
  const input = (id, value, attrs = {}) => el("input", { id, type: "number", value, ...attrs });
  const resample = () =>
    redrawSampling(out).catch((error) =>
      out.replaceChildren(note(error.message, "note error")),
    );
  const controls = el(
    "div",
    { class: "controls" },
    el("label", {}, "temperature ", input("temperature", "1", { min: 0, step: 0.1 })),
    el("label", {}, "top-k ", input("top-k", "", { min: 1, placeholder: "off" })),
    el("label", {}, "top-p ", input("top-p", "0.9", { min: 0, max: 1, step: 0.05 })),
    el("label", {}, "seed ", input("seed", "0", { min: 0 })),
    el("label", {}, el("input", { id: "greedy", type: "checkbox" }), " greedy"),
    el("button", { type: "button", onclick: resample }, "Sample"),
  );
  const out = el("div", {}, note("computing…"));
  body.replaceChildren(
    note(
      "logits / temperature → keep the top-k → keep the top-p nucleus → renormalise → draw " +
        "with the seed. The same code and the same draw as generation.",
    ),
    controls,
    out,
  );
  await redrawSampling(out);
}

/**
 * Samples again and draws the table; the next-token cell, if shown, follows.
 * @param {HTMLElement} out
 */
async function redrawSampling(out) {
  const ex = await sample();
  const head = ["token", "id", "logit", "logit / T", "p before", "top-k", "top-p", "final p"];
  const rows = ex.rows.map((r) =>
    el(
      "tr",
      { class: r.prob > 0 ? "" : "cut" },
      [
        tokenText(r.token_id, r.token),
        r.token_id,
        r.logit.toFixed(3),
        r.scaled_logit.toFixed(3),
        pct(r.prob_before),
        r.kept_top_k ? "kept" : "cut",
        r.kept_top_p ? "kept" : "cut",
        pct(r.prob),
      ].map((v) => el("td", {}, String(v))),
    ),
  );
  const kept =
    `top-k keeps ${ex.kept_top_k} tokens, top-p ${ex.effective_k} ` +
    `(${pct(ex.mass_kept)} of the probability). Chosen: `;
  out.replaceChildren(
    el(
      "table",
      { class: "plain" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ),
    el(
      "p",
      {},
      kept,
      el("b", { class: "chosen" }, tokenText(ex.chosen, ex.chosen_token)),
      ` (id ${ex.chosen}, p ${pct(ex.chosen_prob)})`,
    ),
  );
  const next = state.cells.find((cell) => cell.key === "next");
  if (next?.shown) renderCell(next);
}

/**
 * The sampled token appended to the prompt, and generation from there.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
export async function renderNext(cell, body) {
  const ex = await (state.sampled ?? sample());
  const prompt = shown().request.prompt;
  const text = ex.text.startsWith(prompt)
    ? [prompt, el("mark", {}, ex.text.slice(prompt.length))]
    : [ex.text];
  const out = el("div", { class: "generated" });
  const count = el("input", {
    type: "number",
    value: "20",
    min: 1,
    max: state.limits.max_new_tokens,
  });
  const generateButton = el(
    "button",
    { type: "button", onclick: () => generate(out, Number(count.value), generateButton) },
    "Generate ▸",
  );
  const useAsPrompt = () => {
    $("#prompt").value = ex.text;
    actions.run(true);
  };
  body.replaceChildren(
    note(
      "The sampled id is appended to the ids. Run again on the longer text for the token " +
        "after it, or let generation do that in a loop (with a KV cache, so each new token " +
        "costs one position).",
    ),
    el("div", { class: "continuation", "data-testid": "appended" }, text),
    el(
      "div",
      { class: "controls" },
      el("button", { type: "button", onclick: useAsPrompt }, "Use as prompt and run ▸"),
      el("label", {}, "new tokens ", count),
      generateButton,
    ),
    out,
  );
}

/**
 * Generation uses the shown run's edits, except set-one-value edits: each holds one number of
 * this prompt's forward pass, and generation computes one new position at a time. They are
 * left out, and a note says so.
 * @param {HTMLElement} out
 * @param {number} maxNewTokens
 * @param {HTMLButtonElement} button
 */
async function generate(out, maxNewTokens, button) {
  const { request } = shown();
  const prompt = request.prompt;
  const kept = request.edits.filter((edit) => edit.kind !== "set_value");
  const skipped = request.edits.filter((edit) => edit.kind === "set_value");
  const body = {
    model: request.model,
    prompt,
    edits: kept,
    ...samplingSettings(),
    max_new_tokens: maxNewTokens,
  };
  const added = el("span", { class: "new" });
  const uses = kept.length ? ` It uses ${kept.map(describeEdit).join(", ")}.` : "";
  const skippedNote = skipped.length
    ? note(
        `Generation leaves out ${skipped.map(describeEdit).join(", ")}: a set-one-value edit ` +
          "holds one number of this prompt's forward pass, and generation computes one new " +
          `position at a time.${uses}`,
        "note skipped",
      )
    : null;
  out.replaceChildren(
    ...(skippedNote ? [skippedNote] : []),
    el("div", { class: "continuation" }, prompt, added),
  );
  button.disabled = true;
  try {
    for await (const { event, data } of events("/api/generate", body)) {
      if (event === "token") added.append(/** @type {string} */ (data.text));
    }
  } catch (error) {
    out.append(note(/** @type {Error} */ (error).message, "note error"));
  } finally {
    button.disabled = false;
  }
}
