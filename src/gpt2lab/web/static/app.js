"use strict";
// The gpt2lab notebook. Each cell asks the server for its numbers when it is first shown, and
// every number comes from the library (gpt2lab/web/app.py calls it); this file only draws them.

const ROWS = 64; // rows of a step table fetched at a time
const COLS = 40; // columns fetched at a time
const CLIP_PERCENTILE = 98; // colours saturate at this percentile of |values|: one outlier
// (an edited 50) must not wash every other colour out
const EMPTY_PROMPT = "The prompt is empty: type some text, then press Run.";

const state = {
  models: {}, // name -> {config, parameters, steps}
  limits: {},
  run: null, // the last /api/run answer, with the request that made it
  cells: [],
  shown: 0, // how many cells are shown
  edits: [], // the edits the next run will use
  sampled: null, // promise of the /api/sampling answer for the shown run
  busy: 0,
};

// --- small helpers ----------------------------------------------------------------------------
const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const quote = (text) => JSON.stringify(text); // shows leading spaces and newlines
const pct = (p) => `${(100 * p).toFixed(2)}%`;

function fmt(v) {
  if (v === null) return "−∞"; // masked attention scores: JSON has no infinity
  const size = Math.abs(v);
  if (v !== 0 && (size >= 1e4 || size < 1e-3)) return v.toExponential(2);
  return v.toFixed(3);
}

function setStatus() {
  const status = $("#status");
  status.classList.toggle("busy", state.busy > 0);
  status.textContent = state.busy > 0 ? "computing…" : "";
}

// The server's messages name request fields ("prompt: String should have at least 1
// character"); the page says the same thing in words.
const FRIENDLY = [
  [/^prompt: String should have at least 1 character$/, () => EMPTY_PROMPT],
  [/^prompt: String should have at most (\d+) characters$/, (m) => `The prompt is too long: this server takes at most ${m[1]} characters.`],
  [/^([\w.]+): (.*)$/, (m) => `The ${m[1].replaceAll("_", " ")} is not accepted: ${m[2].charAt(0).toLowerCase()}${m[2].slice(1)}.`],
];

const sentence = (text) => `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?)]$/.test(text) ? "" : "."}`;

// An error answer as a sentence for the page: never a bare status code.
function friendly(status, detail) {
  if (typeof detail !== "string" || detail === "") {
    return `The server could not answer (HTTP ${status}); the terminal running gpt2lab serve may say why.`;
  }
  const problems = detail.split("; ").map((problem) => {
    for (const [pattern, say] of FRIENDLY) {
      const match = status === 422 ? pattern.exec(problem) : null;
      if (match) return say(match);
    }
    return sentence(problem);
  });
  return problems.join(" ");
}

// fetch, with any failure (no server, an error status, a body that is not JSON) turned into an
// Error whose message is a friendly sentence.
async function fetchOrExplain(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Error("The gpt2lab server cannot be reached: is gpt2lab serve still running?");
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new Error(friendly(response.status, data?.detail));
  }
  return response;
}

const post = (body) => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

async function api(path, body) {
  state.busy++;
  setStatus();
  try {
    const response = await fetchOrExplain(path, body === undefined ? {} : post(body));
    return await response.json();
  } finally {
    state.busy--;
    setStatus();
  }
}

function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? error.message : "";
}

function select(options, value, onchange) {
  const node = el("select", { onchange });
  for (const [v, label] of options) node.append(el("option", { value: v, selected: v === value }, label));
  return node;
}

const range = (n) => Array.from({ length: n }, (_, i) => i);
const config = () => state.models[$("#model").value].config;

// A token as the page writes it. A token whose bytes are not whole UTF-8 characters decodes to
// "\ufffd", which says nothing: it is labelled, with its bytes.
function tokenText(id, text) {
  const model = state.models[state.run?.request.model ?? $("#model").value];
  const bytes = model?.partial_tokens[id];
  return bytes === undefined ? quote(text) : `${quote(text)} (partial UTF-8: bytes ${bytes})`;
}

// --- cell titles ------------------------------------------------------------------------------
const TITLES = {
  hook_embed: "Token embeddings W_E[ids]",
  hook_pos_embed: "Position embeddings W_P[positions]",
  hook_resid_pre: "Residual stream entering the block",
  "ln1.hook_mean": "Layer norm 1: mean of each position",
  "ln1.hook_var": "Layer norm 1: variance",
  "ln1.hook_normalized": "Layer norm 1: normalized",
  "ln1.hook_out": "Layer norm 1: gain and bias",
  "attn.hook_q": "Queries",
  "attn.hook_k": "Keys",
  "attn.hook_v": "Values",
  "attn.hook_attn_scores": "Attention scores",
  "attn.hook_masked_scores": "Causal mask",
  "attn.hook_pattern": "Attention pattern",
  "attn.hook_z": "Weighted values z",
  hook_attn_out: "Attention output",
  hook_resid_mid: "Residual stream after attention",
  "ln2.hook_mean": "Layer norm 2: mean",
  "ln2.hook_var": "Layer norm 2: variance",
  "ln2.hook_normalized": "Layer norm 2: normalized",
  "ln2.hook_out": "Layer norm 2: gain and bias",
  "mlp.hook_pre": "MLP: first linear layer",
  "mlp.hook_post": "MLP: GELU",
  hook_mlp_out: "MLP output",
  hook_resid_post: "Residual stream leaving the block",
  "ln_final.hook_mean": "Final layer norm: mean",
  "ln_final.hook_var": "Final layer norm: variance",
  "ln_final.hook_normalized": "Final layer norm: normalized",
  "ln_final.hook_out": "Final layer norm: gain and bias",
  hook_logits: "Logits",
  hook_probs: "Probabilities",
};

const AXES = {
  T: "positions",
  S: "keys (positions attended to)",
  C: "channels",
  "4C": "MLP neurons",
  D: "channels of the head",
  V: "vocabulary",
  1: "",
};

const shortName = (name) => name.replace(/^blocks\.\d+\./, "");

function groupOf(name) {
  const block = /^blocks\.(\d+)\./.exec(name);
  if (block) return `Block ${block[1]}`;
  return name.startsWith("hook_embed") || name.startsWith("hook_pos") ? "Embeddings" : "Output";
}

// --- the notebook -----------------------------------------------------------------------------
function cellList(run) {
  const cells = [
    { key: "tokens", group: "Input", title: "Text → tokens", render: renderTokens },
    { key: "ids", group: "Input", title: "Tokens → ids", render: renderIds },
  ];
  for (const step of run.steps) {
    cells.push({ key: step.name, group: groupOf(step.name), title: TITLES[shortName(step.name)], step, render: renderStep });
  }
  cells.push(
    { key: "lens", group: "Reading the output", title: "Logit lens: the next token if the model stopped early", render: renderLens },
    { key: "sampling", group: "Reading the output", title: "Sampling: from probabilities to one token", render: renderSampling },
    { key: "next", group: "Reading the output", title: "The next token, appended", render: renderNext },
    { key: "edit", group: "Change something", title: "Edit and re-run", render: renderEdit },
  );
  return cells;
}

function buildCells() {
  const main = $("#cells");
  main.replaceChildren();
  state.cells = cellList(state.run);
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
  const runTo = $("#run-to");
  runTo.replaceChildren(...state.cells.map((cell, i) => el("option", { value: i }, `[${i + 1}] ${cell.title}`)));
}

async function renderCell(cell) {
  const body = $(".body", cell.el);
  body.replaceChildren(el("p", { class: "note" }, "computing…"));
  try {
    await cell.render(cell, body);
  } catch (error) {
    body.replaceChildren(el("p", { class: "note error" }, error.message));
  }
}

function showUpTo(last, scroll = true) {
  last = Math.min(last, state.cells.length - 1);
  const drawing = [];
  state.cells.forEach((cell, i) => {
    cell.el.classList.toggle("current", i === last);
    if (i <= last && !cell.shown) {
      cell.shown = true;
      cell.el.hidden = false;
      drawing.push(renderCell(cell));
    }
  });
  state.shown = Math.max(state.shown, last + 1);
  $("#run-to").value = String(last);
  $("#next-cell").disabled = state.shown >= state.cells.length;
  if (scroll) landOn(state.cells[last], drawing);
}

// Scroll to a cell now, and again once the cells drawn above it have their final heights (they
// grow from "computing…" to tables after the first scroll). Scrolling by hand cancels it.
let landing = 0;
async function landOn(cell, drawing) {
  const ticket = ++landing;
  cell.el.scrollIntoView({ block: "start" });
  await Promise.all(drawing);
  await new Promise((resolve) => requestAnimationFrame(resolve));
  if (ticket === landing) cell.el.scrollIntoView({ block: "start" });
}

function stopLanding() {
  landing++;
}

function editsKey(edits) {
  return JSON.stringify(edits);
}

function updateEditsBar() {
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

function describeEdit(edit) {
  switch (edit.kind) {
    case "ablate_head":
      return `ablate head ${edit.layer}.${edit.head} (${edit.how})`;
    case "ablate_mlp":
      return `ablate MLP ${edit.layer} (${edit.how})`;
    case "scale_neuron":
      return `neuron ${edit.layer}.${edit.neuron} × ${edit.factor}`;
    case "steer":
      return `steer ${edit.layer}: ${quote(edit.positive)} − ${quote(edit.negative)} × ${edit.scale}`;
    default:
      return `${edit.step}[${edit.index.join(", ")}] = ${edit.value}`;
  }
}

function addEdit(edit) {
  state.edits.push(edit);
  updateEditsBar();
}

function removeEdit(i) {
  state.edits.splice(i, 1);
  updateEditsBar();
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
  for (const button of ["#next-cell", "#run-to", "#run-all"]) $(button).disabled = true;
  updateEditsBar();
}

// Run the model: a new prompt starts at the first cell; a re-run (edits, another block) keeps
// the cells shown so far and redraws them with the new numbers.
async function run(keepCells) {
  showError(null);
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
    const answer = await api("/api/run", { ...request, k: 10 });
    state.run = { ...answer, request };
  } catch (error) {
    if (keepCells && state.run) {
      showError(new Error(`${error.message} The cells still show the run before.`));
    } else {
      clearResults();
      showError(error);
    }
    return;
  }
  state.sampled = null;
  const shown = keepCells ? state.shown : 1;
  state.shown = 0;
  buildCells();
  for (const button of ["#next-cell", "#run-to", "#run-all"]) $(button).disabled = false;
  showUpTo(shown - 1, !keepCells);
  updateEditsBar();
}

// --- cells: input -----------------------------------------------------------------------------
async function renderTokens(cell, body) {
  const { model, prompt } = state.run.request;
  const data = await api("/api/tokenize", { model, prompt });
  // A word's merges are drawn when it is opened: a long prompt has hundreds of words.
  const words = data.words.map((word) => {
    const what = word.special ? "special token" : `${word.merges.length} merges`;
    const node = el("details", { class: "word" }, el("summary", {}, `${quote(word.word)} → ${word.symbols} → ${what} → ${word.pieces.join(" ")}`));
    node.addEventListener("toggle", () => node.querySelector("table") || node.append(mergeTable(word)));
    return node;
  });
  body.replaceChildren(
    el("p", { class: "note" }, `A regex splits the text into ${data.words.length} words. Each word's bytes (a space shows as Ġ) are merged pair by pair, the pair with the lowest rank in GPT-2's merge list first, into ${data.ids.length} tokens. Open a word to see its merges.`),
    el("div", { class: "tokens" }, data.tokens.map((token, i) => el("span", { class: "tok", title: `id ${data.ids[i]}: ${tokenText(data.ids[i], data.texts[i])}` }, token))),
    el("div", { class: "words" }, words),
  );
}

function mergeTable(word) {
  const steps = word.merges.map((m, i) =>
    el("tr", {}, el("td", {}, `${i + 1}.`), el("td", {}, `rank ${m.rank}`), el("td", {}, `${m.pair[0]} + ${m.pair[1]}`), el("td", {}, `→ ${m.parts.join(" ")}`)),
  );
  const start = el("tr", {}, el("td", {}, "start"), el("td", {}), el("td", {}, word.start.join(" ")));
  return el("table", { class: "merges" }, start, steps);
}

async function renderIds(cell, body) {
  const { ids, tokens } = state.run;
  const rows = ids.map((id, t) => el("tr", {}, el("th", {}, String(t)), el("td", {}, tokenText(id, tokens[t])), el("td", {}, String(id))));
  body.replaceChildren(
    el("p", { class: "note" }, "Each token is looked up in the vocabulary of 50,257 entries. The model sees only these ids."),
    el("p", { class: "mono" }, `ids = [${ids.join(", ")}]`),
    el("div", { class: "grid-wrap" }, el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "position"), el("th", {}, "text"), el("th", {}, "id"))), el("tbody", {}, rows))),
  );
}

// --- cells: the steps -------------------------------------------------------------------------
// One bar per item, as long as its value. When some values are negative the bars start at a
// zero axis in the middle: negative ones go left (blue), positive ones right (red).
function bars(items, top = Math.max(...items.map((item) => Math.abs(item.value)))) {
  top = Math.max(top, 1e-12);
  const signed = items.some((item) => item.value < 0);
  const bar = (value) => {
    const size = Math.min(100, (100 * Math.abs(value)) / top);
    if (!signed) return el("i", { style: `width: ${size}%` });
    const side = value < 0 ? "right" : "left";
    return el("i", { class: value < 0 ? "neg" : "pos", style: `${side}: 50%; width: ${size / 2}%` });
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

async function renderStep(cell, body) {
  const step = cell.step;
  const perHead = step.axes.startsWith("[B, H");
  const parts = [];
  const vocabulary = step.name === "hook_logits" || step.name === "hook_probs";
  if (vocabulary) {
    const probs = step.name === "hook_probs";
    const last = state.run.tokens.length - 1;
    parts.push(
      el("p", { class: "note" }, probs ? `The next-token distribution after ${quote(state.run.tokens[last])} (position ${last}): the most likely tokens.` : `The largest logits at the last position (${last}); softmax turns them into the probabilities of the next cell.`),
      bars(state.run.next.map((n) => ({ label: tokenText(n.id, n.token), value: probs ? n.prob : n.logit, text: probs ? pct(n.prob) : n.logit.toFixed(3) }))),
    );
  }
  const table = el("div", {}, el("p", { class: "note" }, "computing…"));
  const view = { head: perHead ? 0 : null, sort: vocabulary ? { row: state.run.tokens.length - 1, descending: true } : null };
  const redraw = () => grid(table, cell, view).catch((error) => table.replaceChildren(el("p", { class: "note error" }, error.message)));
  const controls = [];
  if (perHead) {
    const heads = range(config().n_head).map((h) => [String(h), `head ${h}`]);
    controls.push(el("label", {}, "head ", select(heads, "0", (e) => { view.head = Number(e.target.value); redraw(); })));
  }
  if (vocabulary) controls.push(...sortControls(view, redraw));
  if (controls.length) parts.push(el("div", { class: "controls" }, controls));
  parts.push(table);
  body.replaceChildren(...parts);
  await grid(table, cell, view);
}

// The order of a vocabulary table's columns: by the values of one position (the last at
// first), largest first; or smallest first, or the vocabulary's own order.
function sortControls(view, redraw) {
  const orders = [["desc", "largest first"], ["asc", "smallest first"], ["vocab", "vocabulary order"]];
  const positions = state.run.tokens.map((t, i) => [String(i), `${i} ${tokenText(state.run.ids[i], t)}`]);
  const position = select(positions, String(view.sort.row), () => {
    view.sort = { row: Number(position.value), descending: order.value !== "asc" };
    if (order.value === "vocab") order.value = "desc";
    redraw();
  });
  const order = select(orders, "desc", () => {
    view.sort = order.value === "vocab" ? null : { row: Number(position.value), descending: order.value === "desc" };
    position.disabled = view.sort === null;
    redraw();
  });
  order.dataset.sort = "order";
  position.dataset.sort = "row";
  return [el("label", {}, "columns ", order), el("label", {}, "by the values at position ", position)];
}

// The numbers of a step at and around the clip value: the colour scale saturates at the
// CLIP_PERCENTILE-th percentile of |values|, the same for positive and negative.
function clipScale(values) {
  const sizes = values.flat().filter((v) => v !== null).map(Math.abs).sort((a, b) => a - b);
  if (sizes.length === 0) return { scale: 1, largest: 0 };
  const largest = sizes[sizes.length - 1];
  const at = sizes[Math.floor((CLIP_PERCENTILE / 100) * (sizes.length - 1))];
  return { scale: at || largest || 1, largest };
}

// The colour key of a table and its heatmap, with the value the colours are clipped at
// (probabilities: from 0 up; other steps: the same both sides of 0).
function legend(g, sequential) {
  const sign = sequential ? "" : "±";
  const text =
    g.largest > g.scale
      ? `colours are clipped at ${sign}${fmt(g.scale)}, the ${CLIP_PERCENTILE}th percentile of the ${sequential ? "values" : "|values|"} loaded first (the largest is ${fmt(g.largest)}): anything beyond has the full colour`
      : `colours scale to the largest ${sequential ? "value" : "|value|"} loaded first`;
  const ends = sequential ? ["0", fmt(g.scale)] : [`−${fmt(g.scale)}`, `+${fmt(g.scale)}`];
  return el("div", { class: "legend", "data-clip": g.scale }, el("span", {}, ends[0]), el("i", { class: sequential ? "seq" : "div" }), el("span", {}, ends[1]), el("span", { class: "note" }, text));
}

// A spreadsheet of one step (one head): rows are positions; more rows and columns are fetched
// as it scrolls, so a big step is never sent whole. The heatmap beside it shows the rows and
// columns the table shows, and follows it as it scrolls.
async function grid(container, cell, view) {
  const step = cell.step;
  const head = view.head;
  const sorting = view.sort ? { sort_row: view.sort.row, descending: view.sort.descending } : {};
  const request = { ...state.run.request, step: step.name, head: head ?? 0, ...sorting };
  const chunk = state.limits.max_window;
  const tokens = state.run.tokens;
  const first = await api("/api/step", { ...request, row_limit: ROWS, col_limit: COLS });
  const g = { values: first.values, columnIds: first.column_ids ?? [], columnTokens: first.column_tokens ?? [], rows: first.rows, columns: first.columns };
  const [rowAxis, colAxis] = first.axes;
  const editable = step.name !== "hook_probs"; // computed after the forward pass: nothing to edit
  const sequential = isProbability(step.name);
  Object.assign(g, clipScale(g.values));

  async function fetchBlock(r0, r1, c0, c1) {
    const out = range(r1 - r0).map(() => []);
    const columnIds = [];
    const columnTokens = [];
    for (let r = r0; r < r1; r += chunk) {
      for (let c = c0; c < c1; c += chunk) {
        const part = await api("/api/step", { ...request, row_offset: r, row_limit: Math.min(chunk, r1 - r), col_offset: c, col_limit: Math.min(chunk, c1 - c) });
        part.values.forEach((row, i) => out[r - r0 + i].push(...row));
        if (r === r0 && part.column_tokens) {
          columnIds.push(...part.column_ids);
          columnTokens.push(...part.column_tokens);
        }
      }
    }
    return { values: out, columnIds, columnTokens };
  }

  const rowLabel = (r) => `${r} ${tokenText(state.run.ids[r], tokens[r])}`;
  const column = (c) => (colAxis === "V" ? g.columnIds[c] : c); // the index a set-value edit uses
  function colLabel(c) {
    if (colAxis === "S") return `${c} ${tokenText(state.run.ids[c], tokens[c])}`;
    if (colAxis === "V") return `${tokenText(g.columnIds[c], g.columnTokens[c])} ${g.columnIds[c]}`;
    if (colAxis === "1") return step.name.split("_").pop();
    return String(c);
  }
  const edited = new Set(
    state.run.request.edits
      .filter((e) => e.kind === "set_value" && e.step === step.name && (head === null || e.index[0] === head))
      .map((e) => e.index.slice(head === null ? 0 : 1).join(",")),
  );

  function td(r, c) {
    const v = g.values[r][c];
    const cls = [v === null ? "null" : "", edited.has(`${r},${column(c)}`) ? "edited" : ""].join(" ").trim();
    return el("td", { class: cls || null, "data-r": r, "data-c": c, style: v === null ? null : `background: ${tint(v, g.scale, sequential)}` }, fmt(v));
  }

  const headRow = el("tr", {}, el("th", {}, ""));
  const tbody = el("tbody");
  const table = el("table", { class: "grid" }, el("thead", {}, headRow), tbody);
  const wrap = el("div", { class: "grid-wrap" }, table);
  const info = el("div", { class: "grid-info" });
  const chart = el("div", { class: "chart" });

  const addColumns = (from) => range(g.values[0].length - from).forEach((i) => headRow.append(el("th", {}, colLabel(from + i))));
  const addRows = (from) =>
    range(g.values.length - from).forEach((i) => {
      const r = from + i;
      tbody.append(el("tr", {}, el("th", {}, rowLabel(r)), range(g.values[r].length).map((c) => td(r, c))));
    });
  function describeWindow() {
    const rows = g.values.length;
    const cols = g.values[0].length;
    const more = rows < g.rows || cols < g.columns ? " · scroll for more" : "";
    const what = (axis) => (AXES[axis] ? ` (${AXES[axis]})` : "");
    const which = head === null ? "" : `head ${head}: `;
    const order = view.sort ? `, ${view.sort.descending ? "largest" : "smallest"} first at position ${view.sort.row}` : "";
    info.textContent = `${which}rows 0–${rows - 1} of ${g.rows}${what(rowAxis)} · columns 0–${cols - 1} of ${g.columns}${what(colAxis)}${order}${more}${editable ? " · double-click a number to change it" : ""}`;
  }
  const redrawChart = () => drawChart(chart, step, g, { rowLabel, colLabel, head, shown: shownWindow(wrap, table) });
  addColumns(0);
  addRows(0);
  describeWindow();

  let loading = false;
  let frame = 0;
  wrap.addEventListener("scroll", async () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(redrawChart);
    if (loading) return;
    const rows = g.values.length;
    const cols = g.values[0].length;
    const nearBottom = wrap.scrollTop + wrap.clientHeight > wrap.scrollHeight - 40;
    const nearRight = wrap.scrollLeft + wrap.clientWidth > wrap.scrollWidth - 80;
    loading = true;
    try {
      if (nearBottom && rows < g.rows) {
        const more = await fetchBlock(rows, Math.min(g.rows, rows + ROWS), 0, cols);
        g.values.push(...more.values);
        addRows(rows);
      } else if (nearRight && cols < g.columns) {
        const more = await fetchBlock(0, rows, cols, Math.min(g.columns, cols + COLS));
        more.values.forEach((row, r) => g.values[r].push(...row));
        g.columnIds.push(...more.columnIds);
        g.columnTokens.push(...more.columnTokens);
        addColumns(cols);
        tbody.querySelectorAll("tr").forEach((tr, r) => tr.append(...range(more.values[r].length).map((i) => td(r, cols + i))));
      } else {
        return;
      }
      describeWindow();
      redrawChart();
    } catch (error) {
      info.textContent = error.message;
    } finally {
      loading = false;
    }
  });

  if (editable) {
    table.addEventListener("dblclick", (event) => {
      const cellNode = event.target.closest("td");
      if (!cellNode || cellNode.querySelector("input")) return;
      const [r, c] = [Number(cellNode.dataset.r), Number(cellNode.dataset.c)];
      const input = el("input", { type: "number", step: "any", value: g.values[r][c] ?? "" });
      cellNode.replaceChildren(input);
      input.focus();
      input.addEventListener("keydown", (e) => {
        if (e.key === "Escape") cellNode.replaceChildren(fmt(g.values[r][c]));
        if (e.key !== "Enter" || input.value === "") return;
        addEdit({ kind: "set_value", step: step.name, index: head === null ? [r, column(c)] : [head, r, c], value: Number(input.value) });
        run(true);
      });
    });
  }
  container.replaceChildren(info, legend(g, sequential), el("div", { class: "split" }, wrap, chart));
  redrawChart(); // now that the table is laid out, the heatmap can show what it shows
}

// The rows [r0, r1) and columns [c0, c1) of a table that can be seen in its scrolled box,
// not counting the sticky labels.
function shownWindow(wrap, table) {
  const headRow = table.tHead.rows[0];
  const rows = table.tBodies[0].rows;
  const top = wrap.scrollTop + headRow.offsetHeight;
  const bottom = wrap.scrollTop + wrap.clientHeight;
  const left = wrap.scrollLeft + headRow.cells[0].offsetWidth;
  const right = wrap.scrollLeft + wrap.clientWidth;
  const span = (n, start, size, from, to) => {
    let first = 0;
    while (first < n - 1 && start(first) + size(first) <= from + 2) first++;
    let last = first;
    while (last < n && start(last) < to - 2) last++;
    return [first, Math.max(last, first + 1)];
  };
  const [r0, r1] = span(rows.length, (r) => rows[r].offsetTop, (r) => rows[r].offsetHeight, top, bottom);
  const cells = headRow.cells;
  const [c0, c1] = span(cells.length - 1, (c) => cells[c + 1].offsetLeft, (c) => cells[c + 1].offsetWidth, left, right);
  return { r0, r1, c0, c1 };
}

// Red for positive, blue for negative (indigo for probabilities), as light tints so the numbers
// stay readable; full tint from the clip value on.
function tint(v, scale, sequential) {
  const x = Math.max(-1, Math.min(1, v / scale));
  const [r, g, b] = sequential ? [67, 56, 202] : x >= 0 ? [239, 68, 68] : [59, 130, 246];
  return `rgb(${r} ${g} ${b} / ${(Math.abs(x) * 0.35).toFixed(3)})`;
}

const isProbability = (name) => name.endsWith("hook_pattern") || name === "hook_probs";

function color(v, scale, sequential) {
  if (v === null) return "#e9ebef";
  const x = Math.max(-1, Math.min(1, v / scale));
  const mix = (to, t) => `rgb(${to.map((c) => Math.round(255 + (c - 255) * t)).join(" ")})`;
  if (sequential) return mix([67, 56, 202], Math.abs(x));
  return x >= 0 ? mix([220, 38, 38], x) : mix([37, 99, 235], -x);
}

// The chart beside a table: bars for one number per position, else a heatmap of the rows and
// columns the table shows, with their labels.
function drawChart(chart, step, g, { rowLabel, colLabel, head, shown }) {
  if (step.name === "hook_logits" || step.name === "hook_probs") {
    chart.replaceChildren();
    return;
  }
  const { r0, r1, c0, c1 } = shown;
  if (g.values[0].length === 1) {
    const top = Math.max(...g.values.map((row) => Math.abs(row[0])));
    const items = range(r1 - r0).map((i) => ({ label: rowLabel(r0 + i), value: g.values[r0 + i][0], text: fmt(g.values[r0 + i][0]) }));
    const negative = g.values.some((row) => row[0] < 0) ? "; left of the axis: negative" : "";
    const where = r1 - r0 < g.rows ? ` Rows ${r0}–${r1 - 1} of ${g.rows}: what the table shows; scroll it to move.` : "";
    chart.replaceChildren(bars(items, top), el("div", { class: "caption" }, `one number per position${negative}.${where}`));
    return;
  }
  const sequential = isProbability(step.name);
  const cells = (r) =>
    range(c1 - c0).map((i) => {
      const v = g.values[r][c0 + i];
      return el("td", { style: `background: ${color(v, g.scale, sequential)}`, title: `${rowLabel(r)} × ${colLabel(c0 + i)}: ${fmt(v)}` });
    });
  const heatmap = el(
    "table",
    { class: "heatmap", "data-rows": `${r0}-${r1 - 1}`, "data-cols": `${c0}-${c1 - 1}` },
    el("thead", {}, el("tr", {}, el("th", {}), range(c1 - c0).map((i) => el("th", { class: "col" }, el("span", {}, colLabel(c0 + i)))))),
    el("tbody", {}, range(r1 - r0).map((i) => el("tr", {}, el("th", {}, rowLabel(r0 + i)), cells(r0 + i)))),
  );
  const what = sequential
    ? `head ${head}: row = query position, column = key; darker = more attention. Above the diagonal: 0, the causal mask.`
    : `red > 0 > blue${step.name.includes("masked") ? ", grey masked" : ""}.`;
  const where = `Rows ${r0}–${r1 - 1} of ${g.rows}, columns ${c0}–${c1 - 1} of ${g.columns}: what the table shows; scroll it to move.`;
  chart.replaceChildren(heatmap, el("div", { class: "caption" }, `${what} ${where} Hover for values.`));
}

// --- cells: reading the output ----------------------------------------------------------------
async function renderLens(cell, body) {
  const lens = await api("/api/lens", { ...state.run.request, k: 3, points: "post" });
  const ids = state.run.ids;
  const head = el("tr", {}, el("th", {}, "read out after"), lens.tokens.map((t, i) => el("th", {}, `${i} ${tokenText(ids[i], t)}`)));
  const rows = lens.points.map((point, p) =>
    el(
      "tr",
      {},
      el("th", {}, point.replace("blocks.", "block ").replace(".hook_", " ")),
      lens.top_tokens[p].map((top, t) => {
        const prob = lens.top_probs[p][t][0];
        const topIds = lens.top_ids[p][t];
        const title = top.map((tok, k) => `${tokenText(topIds[k], tok)} ${pct(lens.top_probs[p][t][k])}`).join("\n");
        return el("td", { style: `background: rgb(67 56 202 / ${(0.45 * prob).toFixed(3)})`, title }, `${tokenText(topIds[0], top[0])} ${pct(prob)}`);
      }),
    ),
  );
  const wrap = el("div", { class: "grid-wrap" }, el("table", { class: "plain lens" }, el("thead", {}, head), el("tbody", {}, rows)));
  body.replaceChildren(
    el("p", { class: "note" }, "ln_final(x) @ W_Eᵀ applied to the residual stream after each block, as if the blocks after it were removed: the most likely next token at every position. The last row is the model's real output. Hover a cell for its top 3. It opens at the last position, the one whose next token is not in the prompt; scroll left for the others."),
    wrap,
  );
  wrap.scrollLeft = wrap.scrollWidth; // the last position: the prediction of the next token
}

function samplingSettings() {
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  return {
    temperature: number("#temperature"),
    top_k: number("#top-k"),
    top_p: number("#top-p"),
    seed: number("#seed"),
    greedy: $("#greedy").checked,
  };
}

function sample() {
  state.sampled = api("/api/sampling", { ...state.run.request, ...samplingSettings(), top: 10 });
  return state.sampled;
}

async function renderSampling(cell, body) {
  const input = (id, value, attrs = {}) => el("input", { id, type: "number", value, ...attrs });
  const controls = el(
    "div",
    { class: "controls" },
    el("label", {}, "temperature ", input("temperature", "1", { min: 0, step: 0.1 })),
    el("label", {}, "top-k ", input("top-k", "", { min: 1, placeholder: "off" })),
    el("label", {}, "top-p ", input("top-p", "0.9", { min: 0, max: 1, step: 0.05 })),
    el("label", {}, "seed ", input("seed", "0", { min: 0 })),
    el("label", {}, el("input", { id: "greedy", type: "checkbox" }), " greedy"),
    el("button", { type: "button", onclick: () => redrawSampling(out).catch((error) => out.replaceChildren(el("p", { class: "note error" }, error.message))) }, "Sample"),
  );
  const out = el("div", {}, el("p", { class: "note" }, "computing…"));
  body.replaceChildren(
    el("p", { class: "note" }, "logits / temperature → keep the top-k → keep the top-p nucleus → renormalise → draw with the seed. The same code and the same draw as generation."),
    controls,
    out,
  );
  await redrawSampling(out);
}

async function redrawSampling(out) {
  const ex = await sample();
  const head = ["token", "id", "logit", "logit / T", "p before", "top-k", "top-p", "final p"];
  const rows = ex.rows.map((r) =>
    el(
      "tr",
      { class: r.prob > 0 ? "" : "cut" },
      [tokenText(r.token_id, r.token), r.token_id, r.logit.toFixed(3), r.scaled_logit.toFixed(3), pct(r.prob_before), r.kept_top_k ? "kept" : "cut", r.kept_top_p ? "kept" : "cut", pct(r.prob)].map((v) => el("td", {}, String(v))),
    ),
  );
  out.replaceChildren(
    el("table", { class: "plain" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
    el("p", {}, `top-k keeps ${ex.kept_top_k} tokens, top-p ${ex.effective_k} (${pct(ex.mass_kept)} of the probability). Chosen: `, el("b", { class: "chosen" }, tokenText(ex.chosen, ex.chosen_token)), ` (id ${ex.chosen}, p ${pct(ex.chosen_prob)})`),
  );
  const next = state.cells.find((cell) => cell.key === "next");
  if (next?.shown) renderCell(next);
}

async function renderNext(cell, body) {
  const ex = await (state.sampled ?? sample());
  const prompt = state.run.request.prompt;
  const text = ex.text.startsWith(prompt) ? [prompt, el("mark", {}, ex.text.slice(prompt.length))] : [ex.text];
  const out = el("div", { class: "generated" });
  const count = el("input", { type: "number", value: "20", min: 1, max: state.limits.max_new_tokens });
  const generateButton = el("button", { type: "button", onclick: () => generate(out, Number(count.value), generateButton) }, "Generate ▸");
  body.replaceChildren(
    el("p", { class: "note" }, "The sampled id is appended to the ids. Run again on the longer text for the token after it, or let generation do that in a loop (with a KV cache, so each new token costs one position)."),
    el("div", { class: "continuation", "data-testid": "appended" }, text),
    el(
      "div",
      { class: "controls" },
      el("button", { type: "button", onclick: () => { $("#prompt").value = ex.text; run(true); } }, "Use as prompt and run ▸"),
      el("label", {}, "new tokens ", count),
      generateButton,
    ),
    out,
  );
}

// Generation uses the shown run's edits, except set-one-value edits: each holds one number of
// this prompt's forward pass, and generation computes one new position at a time. They are
// left out, and a note says so.
async function generate(out, maxNewTokens, button) {
  const prompt = state.run.request.prompt;
  const edits = state.run.request.edits;
  const kept = edits.filter((edit) => edit.kind !== "set_value");
  const skipped = edits.filter((edit) => edit.kind === "set_value");
  const body = { model: state.run.request.model, prompt, edits: kept, ...samplingSettings(), max_new_tokens: maxNewTokens };
  const added = el("span", { class: "new" });
  const note = skipped.length
    ? el("p", { class: "note skipped" }, `Generation leaves out ${skipped.map(describeEdit).join(", ")}: a set-one-value edit holds one number of this prompt's forward pass, and generation computes one new position at a time.${kept.length ? ` It uses ${kept.map(describeEdit).join(", ")}.` : ""}`)
    : null;
  out.replaceChildren(...(note ? [note] : []), el("div", { class: "continuation" }, prompt, added));
  button.disabled = true;
  state.busy++;
  setStatus();
  try {
    const response = await fetchOrExplain("/api/generate", post(body));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)[1];
        const data = JSON.parse(/^data: (.*)$/m.exec(block)[1]);
        if (event === "token") added.append(data.text);
        if (event === "error") throw new Error(sentence(data.detail));
      }
    }
  } catch (error) {
    out.append(el("p", { class: "note error" }, error.message));
  } finally {
    button.disabled = false;
    state.busy--;
    setStatus();
  }
}

// --- cells: edits -----------------------------------------------------------------------------
function renderEdit(cell, body) {
  const { n_layer, n_head, n_embd } = config();
  const layers = range(n_layer).map((l) => [String(l), `block ${l}`]);
  const how = () => select([["zero", "to zero"], ["mean", "to its mean"]], "zero");
  const number = (value, attrs = {}) => el("input", { type: "number", value, ...attrs });
  const text = (value) => el("input", { type: "text", value, size: 10 });

  const head = { layer: select(layers, "0"), head: select(range(n_head).map((h) => [String(h), `head ${h}`]), "0"), how: how() };
  const mlp = { layer: select(layers, "0"), how: how() };
  const neuron = { layer: select(layers, "0"), neuron: number("0", { min: 0, max: 4 * n_embd - 1 }), factor: number("0", { step: 0.5 }) };
  const steer = { layer: select(layers, String(Math.floor(n_layer / 2))), positive: text(" happy"), negative: text(" sad"), scale: number("4", { step: 0.5 }) };
  const add = (label, make) => el("button", { type: "button", "data-add": label, onclick: () => addEdit(make()) }, "Add");

  const forms = el(
    "div",
    { class: "edit-forms" },
    el("b", {}, "Ablate a head"),
    el("div", { class: "controls", "data-form": "ablate_head" }, head.layer, head.head, head.how,
      add("ablate_head", () => ({ kind: "ablate_head", layer: Number(head.layer.value), head: Number(head.head.value), how: head.how.value }))),
    el("b", {}, "Ablate an MLP"),
    el("div", { class: "controls" }, mlp.layer, mlp.how, add("ablate_mlp", () => ({ kind: "ablate_mlp", layer: Number(mlp.layer.value), how: mlp.how.value }))),
    el("b", {}, "Scale a neuron"),
    el("div", { class: "controls" }, neuron.layer, el("label", {}, "neuron ", neuron.neuron), el("label", {}, "× ", neuron.factor),
      add("scale_neuron", () => ({ kind: "scale_neuron", layer: Number(neuron.layer.value), neuron: Number(neuron.neuron.value), factor: Number(neuron.factor.value) }))),
    el("b", {}, "Steer"),
    el("div", { class: "controls" }, steer.layer, el("label", {}, "+ ", steer.positive), el("label", {}, "− ", steer.negative), el("label", {}, "× ", steer.scale),
      add("steer", () => ({ kind: "steer", layer: Number(steer.layer.value), positive: steer.positive.value, negative: steer.negative.value, scale: Number(steer.scale.value) }))),
    el("b", {}, "Set one value"),
    el("div", { class: "note" }, "double-click a number in any step's table above and press Enter"),
  );
  const compare = el("div", { class: "compare" }, el("p", { class: "note" }, "computing…"));
  body.replaceChildren(
    el("p", { class: "note" }, "Each edit replaces the value at one step as the forward pass goes by; everything before that step stays the same, everything after it is computed again. Add edits, then re-run: every cell above shows the edited run, and this cell compares the next-token probabilities."),
    forms,
    el("div", { class: "controls" }, el("button", { type: "button", class: "primary", onclick: () => run(true) }, "Re-run with edits")),
    compare,
  );
  return renderComparison(compare);
}

async function renderComparison(out) {
  if (state.run.request.edits.length === 0) {
    out.replaceChildren(el("p", { class: "note" }, "No edits in the shown run yet."));
    return;
  }
  const answer = await api("/api/edit", { ...state.run.request, k: 8 });
  const top = Math.max(...answer.rows.map((row) => Math.max(row.before, row.after)));
  const bar = (p, cls) => el("div", { class: "bar-track thin" }, el("i", { class: cls, style: `width: ${(100 * p) / top}%` }));
  const rows = answer.rows.map((row) => {
    const change = row.after - row.before;
    return el(
      "tr",
      { "data-token": row.id },
      el("td", {}, tokenText(row.id, row.token)),
      el("td", {}, pct(row.before)),
      el("td", {}, pct(row.after)),
      el("td", { class: change >= 0 ? "up" : "down" }, `${change >= 0 ? "+" : "−"}${pct(Math.abs(change))}`),
      el("td", {}, bar(row.before, ""), bar(row.after, "after")),
    );
  });
  const head = ["token", "before", "after", "change", "before / after"].map((h) => el("th", {}, h));
  out.replaceChildren(
    el("p", {}, `Next-token probabilities without and with ${state.run.request.edits.map(describeEdit).join(", ")}:`),
    el("table", { class: "plain compare" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows)),
  );
}

// --- start ------------------------------------------------------------------------------------
function fillLayers() {
  const { n_layer, n_head, n_embd, n_positions } = config();
  const model = state.models[$("#model").value];
  $("#layer").replaceChildren(...range(n_layer).map((l) => el("option", { value: l }, String(l))));
  const millions = (model.parameters / 1e6).toFixed(1);
  $("#model-info").textContent = `${n_layer} blocks · ${n_head} heads · ${n_embd} wide · context ${n_positions} · ${millions}M parameters`;
}

async function start() {
  state.intro = $("#cells .intro");
  for (const kind of ["wheel", "touchmove", "keydown"]) window.addEventListener(kind, stopLanding, { passive: true });
  const answer = await api("/api/models");
  state.limits = answer.limits;
  for (const model of answer.models) state.models[model.name] = model;
  $("#model").replaceChildren(...answer.models.map((m) => el("option", { value: m.name }, m.name)));
  fillLayers();
  $("#model").addEventListener("change", () => {
    fillLayers();
    state.edits = [];
    if (state.run) run(false);
  });
  $("#layer").addEventListener("change", () => state.run && run(true));
  $("#prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(false);
  });
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run(false);
  });
  $("#next-cell").addEventListener("click", () => showUpTo(state.shown));
  $("#run-to").addEventListener("change", (event) => showUpTo(Number(event.target.value)));
  $("#run-all").addEventListener("click", () => showUpTo(state.cells.length - 1));
  $("#rerun").addEventListener("click", () => run(true));
  $("#clear-edits").addEventListener("click", () => {
    state.edits = [];
    run(true);
  });
  updateEditsBar();
  $("#run").disabled = false; // only now are the models known
}

start().catch(showError);
