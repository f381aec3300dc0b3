// @ts-check
// The notebook: running the model, the list of cells, showing them one by one, and the input
// cells (text to tokens, tokens to ids).

import { api } from "./api.js";
import { $, el, note, quote, renderCell, showError } from "./dom.js";
import { renderEdit, updateEditsBar } from "./edits.js";
import { renderStep } from "./grid.js";
import { renderLens, renderNext, renderSampling } from "./outputs.js";
import { EMPTY_PROMPT, actions, state, tokenText } from "./state.js";
import {
  renderAttentionLines as renderLines, renderColoredText, renderHeads, renderSaliency,
} from "./viewcells.js";

/** @typedef {import("./types.js").Run} Run */
/** @typedef {import("./types.js").RunAnswer} RunAnswer */
/** @typedef {import("./types.js").RunRequest} RunRequest */
/** @typedef {import("./types.js").TokenizeAnswer} TokenizeAnswer */
/** @typedef {import("./types.js").Word} Word */
/** @typedef {import("./state.js").Cell} Cell */

/**
 * The heading a step's cell is under.
 * @param {string} name
 */
function groupOf(name) {
  const block = /^blocks\.(\d+)\./.exec(name);
  if (block) return `Block ${block[1]}`;
  return name.startsWith("hook_embed") || name.startsWith("hook_pos") ? "Embeddings" : "Output";
}

const STEPPER = ["#next-cell", "#run-to", "#run-all"];

/**
 * The cells of a run: the input, one per step, then reading the output and the edits.
 * @param {Run} run
 * @returns {Cell[]}
 */
function cellList(run) {
  const output = "Reading the output";
  /** @type {Cell[]} */
  const cells = [
    { key: "tokens", group: "Input", title: "Text → tokens", render: renderTokens },
    { key: "ids", group: "Input", title: "Tokens → ids", render: renderIds },
  ];
  for (const step of run.steps) {
    const { title } = step; // from the library's table of steps (hooks.STEPS)
    cells.push({ key: step.name, group: groupOf(step.name), title, step, render: renderStep });
    if (step.name.endsWith("attn.hook_pattern")) {
      const group = groupOf(step.name);
      cells.push(
        { key: "attention-lines", group, title: "Attention as lines", render: renderLines },
        { key: "every-head", group, title: "Every head of every block", render: renderHeads },
      );
    }
    if (step.name.endsWith("mlp.hook_post")) {
      const group = groupOf(step.name);
      const title = "The text coloured by an activation";
      cells.push({ key: "colored-text", group, title, render: renderColoredText });
    }
  }
  cells.push(
    {
      key: "lens",
      group: output,
      title: "Logit lens: the next token if the model stopped early",
      render: renderLens,
    },
    {
      key: "saliency",
      group: output,
      title: "Saliency: which tokens made an output likely",
      render: renderSaliency,
    },
    {
      key: "sampling",
      group: output,
      title: "Sampling: from probabilities to one token",
      render: renderSampling,
    },
    { key: "next", group: output, title: "The next token, appended", render: renderNext },
    { key: "edit", group: "Change something", title: "Edit and re-run", render: renderEdit },
  );
  return cells;
}

/** Builds the (hidden) cells of the shown run, and the run-to list. */
function buildCells() {
  const main = $("#cells");
  main.replaceChildren();
  state.cells = cellList(/** @type {Run} */ (state.run));
  /** @type {string | null} */
  let group = null;
  state.cells.forEach((cell, i) => {
    if (cell.group !== group) {
      group = cell.group;
      main.append(el("h3", { class: "group" }, group));
    }
    const step = cell.step;
    cell.el = el(
      "section",
      { class: "cell", "data-cell": cell.key, hidden: true },
      el(
        "header",
        {},
        el("span", { class: "num" }, `[${i + 1}]`),
        el("h2", {}, cell.title),
        step ? el("span", { class: "name" }, step.name) : null,
        step ? el("span", { class: "shape" }, `[${step.shape.join(", ")}] = ${step.axes}`) : null,
      ),
      step ? el("div", { class: "formula" }, step.formula) : null,
      el("div", { class: "body" }),
    );
    cell.shown = false;
    main.append(cell.el);
  });
  const options = state.cells.map((cell, i) =>
    el("option", { value: i }, `[${i + 1}] ${cell.title}`),
  );
  $("#run-to").replaceChildren(...options);
}

/**
 * Shows every cell up to the last-th (drawing those not drawn yet), and lands on it.
 * @param {number} last
 * @param {boolean} [scroll]
 */
export function showUpTo(last, scroll = true) {
  last = Math.min(last, state.cells.length - 1);
  /** @type {Promise<void>[]} */
  const drawing = [];
  state.cells.forEach((cell, i) => {
    const node = /** @type {HTMLElement} */ (cell.el);
    node.classList.toggle("current", i === last);
    if (i <= last && !cell.shown) {
      cell.shown = true;
      node.hidden = false;
      drawing.push(renderCell(cell));
    }
  });
  state.shown = Math.max(state.shown, last + 1);
  $("#run-to").value = String(last);
  $("#next-cell").disabled = state.shown >= state.cells.length;
  if (scroll) landOn(state.cells[last], drawing);
  actions.landed(state.cells[last].key);
}

// Scroll to a cell now, and again once the cells drawn above it have their final heights (they
// grow from "computing…" to tables after the first scroll). Scrolling by hand cancels it.
let landing = 0;

/**
 * @param {Cell} cell
 * @param {Promise<void>[]} drawing
 */
async function landOn(cell, drawing) {
  const ticket = ++landing;
  const node = /** @type {HTMLElement} */ (cell.el);
  node.scrollIntoView({ block: "start" });
  await Promise.all(drawing);
  await new Promise((resolve) => requestAnimationFrame(resolve));
  if (ticket === landing) node.scrollIntoView({ block: "start" });
}

/** Cancels landing: the reader scrolls by hand. */
export function stopLanding() {
  landing++;
}

// Back to the empty page: no cells, the stepper off. Old results never stay beside a message
// about a prompt that could not run.
function clearResults() {
  state.run = null;
  state.cells = [];
  state.shown = 0;
  state.sampled = null;
  $("#cells").replaceChildren(state.intro);
  $("#run-to").replaceChildren();
  for (const button of STEPPER) $(button).disabled = true;
  updateEditsBar();
}

/**
 * Run the model: a new prompt starts at the first cell; a re-run (edits, another block) keeps
 * the cells shown so far and redraws them with the new numbers.
 * @param {boolean} keepCells
 */
export async function run(keepCells) {
  showError(null);
  /** @type {RunRequest} */
  const request = {
    model: $("#model").value,
    prompt: $("#prompt").value,
    edits: structuredClone(state.edits),
    layer: Number($("#layer").value),
  };
  if (request.prompt === "") {
    clearResults();
    showError(new Error(EMPTY_PROMPT));
    return;
  }
  try {
    /** @type {RunAnswer} */
    const answer = await api("/api/run", { ...request, k: 10 });
    state.run = { ...answer, request };
  } catch (error) {
    const message = /** @type {Error} */ (error).message;
    if (keepCells && state.run) {
      showError(new Error(`${message} The cells still show the run before.`));
    } else {
      clearResults();
      showError(/** @type {Error} */ (error));
    }
    return;
  }
  state.sampled = null;
  const shown = keepCells ? state.shown : 1;
  state.shown = 0;
  buildCells();
  for (const button of STEPPER) $(button).disabled = false;
  showUpTo(shown - 1, !keepCells);
  updateEditsBar();
  actions.ran();
}

actions.run = run;

/**
 * Text to tokens: the words of the regex, and each word's byte-pair merges.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
async function renderTokens(cell, body) {
  const { model, prompt } = /** @type {Run} */ (state.run).request;
  /** @type {TokenizeAnswer} */
  const data = await api("/api/tokenize", { model, prompt });
  // A word's merges are drawn when it is opened: a long prompt has hundreds of words.
  const words = data.words.map((word) => {
    const what = word.special ? "special token" : `${word.merges.length} merges`;
    const summary = `${quote(word.word)} → ${word.symbols} → ${what} → ${word.pieces.join(" ")}`;
    const node = el("details", { class: "word" }, el("summary", {}, summary));
    node.addEventListener(
      "toggle",
      () => node.querySelector("table") || node.append(mergeTable(word)),
    );
    return node;
  });
  const tokens = data.tokens.map((token, i) => {
    const title = `id ${data.ids[i]}: ${tokenText(data.ids[i], data.texts[i])}`;
    return el("span", { class: "tok", title }, token);
  });
  body.replaceChildren(
    note(
      `A regex splits the text into ${data.words.length} words. Each word's bytes (a space ` +
        "shows as Ġ) are merged pair by pair, the pair with the lowest rank in GPT-2's merge " +
        `list first, into ${data.ids.length} tokens. Open a word to see its merges.`,
    ),
    el("div", { class: "tokens" }, tokens),
    el("div", { class: "words" }, words),
  );
}

/**
 * The merges of one word, in the order they happen.
 * @param {Word} word
 */
function mergeTable(word) {
  const steps = word.merges.map((m, i) =>
    el(
      "tr",
      {},
      el("td", {}, `${i + 1}.`),
      el("td", {}, `rank ${m.rank}`),
      el("td", {}, `${m.pair[0]} + ${m.pair[1]}`),
      el("td", {}, `→ ${m.parts.join(" ")}`),
    ),
  );
  const start = el(
    "tr",
    {},
    el("td", {}, "start"),
    el("td", {}),
    el("td", {}, word.start.join(" ")),
  );
  return el("table", { class: "merges" }, start, steps);
}

/**
 * Tokens to ids: a table of positions, texts and ids.
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
async function renderIds(cell, body) {
  const { ids, tokens } = /** @type {Run} */ (state.run);
  const rows = ids.map((id, t) =>
    el(
      "tr",
      {},
      el("th", {}, String(t)),
      el("td", {}, tokenText(id, tokens[t])),
      el("td", {}, String(id)),
    ),
  );
  const head = el("tr", {}, el("th", {}, "position"), el("th", {}, "text"), el("th", {}, "id"));
  body.replaceChildren(
    note(
      "Each token is looked up in the vocabulary of 50,257 entries. The model sees only " +
        "these ids.",
    ),
    el("p", { class: "mono" }, `ids = [${ids.join(", ")}]`),
    el(
      "div",
      { class: "grid-wrap" },
      el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, rows)),
    ),
  );
}
