// @ts-check
// The cells of the steps: a spreadsheet of one step's numbers, fetched as it scrolls, its
// colour scale, and the heatmap (or bars) beside it of the rows and columns it shows.

import { api } from "./api.js";
import { el, fmt, note, pct, quote, range, select } from "./dom.js";
import { addEdit } from "./edits.js";
import { bars } from "./outputs.js";
import { COLS, ROWS, actions, config, state, tokenText } from "./state.js";

/** @typedef {import("./types.js").Run} Run */
/** @typedef {import("./types.js").StepInfo} StepInfo */
/** @typedef {import("./types.js").StepWindow} StepWindow */
/** @typedef {import("./state.js").Cell} Cell */

/**
 * What a table shows: the head of a per-head step, and the order of a vocabulary's columns.
 * @typedef {{head: number | null, sort: {row: number, descending: boolean} | null}} View
 */

/**
 * The numbers of a table loaded so far, with its full size and its colour scale.
 * @typedef {object} Loaded
 * @property {(number | null)[][]} values
 * @property {number[]} columnIds
 * @property {string[]} columnTokens
 * @property {number} rows
 * @property {number} columns
 * @property {number} scale the value colours are clipped at
 * @property {number} largest
 */

/** @typedef {{r0: number, r1: number, c0: number, c1: number}} Window */

const CLIP_PERCENTILE = 98; // colours saturate at this percentile of |values|: one outlier
// (an edited 50) must not wash every other colour out

/** @type {Record<string, string>} */
const AXES = {
  T: "positions",
  S: "keys (positions attended to)",
  C: "channels",
  "4C": "MLP neurons",
  D: "channels of the head",
  V: "vocabulary",
  1: "",
};

/** The shown run: the cells exist only while there is one. */
const shown = () => /** @type {Run} */ (state.run);

/**
 * Whether a step's values are probabilities (coloured from 0 up, not both sides of 0).
 * @param {string} name
 */
const isProbability = (name) => name.endsWith("hook_pattern") || name === "hook_probs";

/**
 * A cell of one step: for the logits and probabilities the likely next tokens first, then
 * the table (of one head, or in one order of the vocabulary).
 * @param {Cell} cell
 * @param {HTMLElement} body
 */
export async function renderStep(cell, body) {
  const step = /** @type {StepInfo} */ (cell.step);
  const run = shown();
  const perHead = step.head_axis !== null;
  const parts = [];
  const vocabulary = step.name === "hook_logits" || step.name === "hook_probs";
  if (vocabulary) {
    const probs = step.name === "hook_probs";
    const last = run.tokens.length - 1;
    parts.push(
      note(
        probs
          ? `The next-token distribution after ${quote(run.tokens[last])} (position ${last}): ` +
              "the most likely tokens."
          : `The largest logits at the last position (${last}); softmax turns them into the ` +
              "probabilities of the next cell.",
      ),
      bars(
        run.next.map((n) => ({
          label: tokenText(n.id, n.token),
          value: probs ? n.prob : n.logit,
          text: probs ? pct(n.prob) : n.logit.toFixed(3),
        })),
      ),
    );
  }
  const table = el("div", {}, note("computing…"));
  /** @type {View} */
  const view = {
    head: perHead ? 0 : null,
    sort: vocabulary ? { row: run.tokens.length - 1, descending: true } : null,
  };
  const redraw = () =>
    grid(table, step, view).catch((error) =>
      table.replaceChildren(note(error.message, "note error")),
    );
  const controls = [];
  if (perHead) {
    /** @type {[string, string][]} */
    const heads = range(config().n_head).map((h) => [String(h), `head ${h}`]);
    /** @param {Event} e */
    const pick = (e) => {
      view.head = Number(/** @type {HTMLSelectElement} */ (e.target).value);
      redraw();
    };
    controls.push(el("label", {}, "head ", select(heads, "0", pick)));
  }
  if (vocabulary) controls.push(...sortControls(view, redraw));
  if (controls.length) parts.push(el("div", { class: "controls" }, controls));
  parts.push(table);
  body.replaceChildren(...parts);
  await grid(table, step, view);
}

/**
 * The order of a vocabulary table's columns: by the values of one position (the last at
 * first), largest first; or smallest first, or the vocabulary's own order.
 * @param {View} view
 * @param {() => void} redraw
 */
function sortControls(view, redraw) {
  const run = shown();
  /** @type {[string, string][]} */
  const orders = [
    ["desc", "largest first"],
    ["asc", "smallest first"],
    ["vocab", "vocabulary order"],
  ];
  /** @type {[string, string][]} */
  const positions = run.tokens.map((t, i) => [String(i), `${i} ${tokenText(run.ids[i], t)}`]);
  const sortRow = view.sort ? view.sort.row : 0;
  const position = select(positions, String(sortRow), () => {
    view.sort = { row: Number(position.value), descending: order.value !== "asc" };
    if (order.value === "vocab") order.value = "desc";
    redraw();
  });
  const order = select(orders, "desc", () => {
    view.sort =
      order.value === "vocab"
        ? null
        : { row: Number(position.value), descending: order.value === "desc" };
    position.disabled = view.sort === null;
    redraw();
  });
  order.dataset.sort = "order";
  position.dataset.sort = "row";
  return [
    el("label", {}, "columns ", order),
    el("label", {}, "by the values at position ", position),
  ];
}

/**
 * The numbers of a step at and around the clip value: the colour scale saturates at the
 * CLIP_PERCENTILE-th percentile of |values|, the same for positive and negative.
 * @param {(number | null)[][]} values
 */
function clipScale(values) {
  const sizes = /** @type {number[]} */ (values.flat().filter((v) => v !== null))
    .map(Math.abs)
    .sort((a, b) => a - b);
  if (sizes.length === 0) return { scale: 1, largest: 0 };
  const largest = sizes[sizes.length - 1];
  const at = sizes[Math.floor((CLIP_PERCENTILE / 100) * (sizes.length - 1))];
  return { scale: at || largest || 1, largest };
}

/**
 * The colour key of a table and its heatmap, with the value the colours are clipped at
 * (probabilities: from 0 up; other steps: the same both sides of 0).
 * @param {Loaded} g
 * @param {boolean} sequential
 */
function legend(g, sequential) {
  const sign = sequential ? "" : "±";
  const text =
    g.largest > g.scale
      ? `colours are clipped at ${sign}${fmt(g.scale)}, the ${CLIP_PERCENTILE}th percentile of ` +
        `the ${sequential ? "values" : "|values|"} loaded first (the largest is ` +
        `${fmt(g.largest)}): anything beyond has the full colour`
      : `colours scale to the largest ${sequential ? "value" : "|value|"} loaded first`;
  const ends = sequential ? ["0", fmt(g.scale)] : [`−${fmt(g.scale)}`, `+${fmt(g.scale)}`];
  return el(
    "div",
    { class: "legend", "data-clip": g.scale },
    el("span", {}, ends[0]),
    el("i", { class: sequential ? "seq" : "div" }),
    el("span", {}, ends[1]),
    el("span", { class: "note" }, text),
  );
}

/**
 * A spreadsheet of one step (one head): rows are positions; more rows and columns are fetched
 * as it scrolls, so a big step is never sent whole. The heatmap beside it shows the rows and
 * columns the table shows, and follows it as it scrolls.
 * @param {HTMLElement} container
 * @param {StepInfo} step
 * @param {View} view
 */
async function grid(container, step, view) {
  const run = shown();
  const head = view.head;
  const sorting = view.sort ? { sort_row: view.sort.row, descending: view.sort.descending } : {};
  const request = { ...run.request, step: step.name, head: head ?? 0, ...sorting };
  const chunk = state.limits.max_window;
  const tokens = run.tokens;
  /** @type {StepWindow} */
  const first = await api("/api/step", { ...request, row_limit: ROWS, col_limit: COLS });
  /** @type {Loaded} */
  const g = {
    values: first.values,
    columnIds: first.column_ids ?? [],
    columnTokens: first.column_tokens ?? [],
    rows: first.rows,
    columns: first.columns,
    ...clipScale(first.values),
  };
  const [rowAxis, colAxis] = first.axes;
  const editable = step.name !== "hook_probs"; // computed after the forward pass: nothing to edit
  const sequential = isProbability(step.name);

  /**
   * Rows [r0, r1) and columns [c0, c1), in requests of at most the server's window.
   * @param {number} r0
   * @param {number} r1
   * @param {number} c0
   * @param {number} c1
   */
  async function fetchBlock(r0, r1, c0, c1) {
    /** @type {(number | null)[][]} */
    const out = range(r1 - r0).map(() => []);
    /** @type {number[]} */
    const columnIds = [];
    /** @type {string[]} */
    const columnTokens = [];
    for (let r = r0; r < r1; r += chunk) {
      for (let c = c0; c < c1; c += chunk) {
        /** @type {StepWindow} */
        const part = await api("/api/step", {
          ...request,
          row_offset: r,
          row_limit: Math.min(chunk, r1 - r),
          col_offset: c,
          col_limit: Math.min(chunk, c1 - c),
        });
        part.values.forEach((row, i) => out[r - r0 + i].push(...row));
        if (r === r0 && part.column_tokens) {
          columnIds.push(...(part.column_ids ?? []));
          columnTokens.push(...part.column_tokens);
        }
      }
    }
    return { values: out, columnIds, columnTokens };
  }

  /** @param {number} r */
  const rowLabel = (r) => `${r} ${tokenText(run.ids[r], tokens[r])}`;
  /** @param {number} c the index a set-value edit uses */
  const column = (c) => (colAxis === "V" ? g.columnIds[c] : c);
  /** @param {number} c */
  function colLabel(c) {
    if (colAxis === "S") return `${c} ${tokenText(run.ids[c], tokens[c])}`;
    if (colAxis === "V") return `${tokenText(g.columnIds[c], g.columnTokens[c])} ${g.columnIds[c]}`;
    if (colAxis === "1") return step.name.split("_").pop();
    return String(c);
  }
  // A set-value index counts every axis after the batch; the head's is at head_axis - 1.
  const at = step.head_axis === null ? -1 : step.head_axis - 1;
  /**
   * The index of the shown table's cell (row, column) in the step's tensor.
   * @param {number} r
   * @param {number} c
   */
  function tensorIndex(r, c) {
    const index = [r, column(c)];
    if (head !== null) index.splice(at, 0, head);
    return index;
  }
  const edited = new Set(
    run.request.edits
      .filter(
        (e) =>
          e.kind === "set_value" && e.step === step.name && (head === null || e.index[at] === head),
      )
      .map((e) =>
        e.kind === "set_value" ? e.index.filter((_, i) => head === null || i !== at).join(",") : "",
      ),
  );

  /**
   * @param {number} r
   * @param {number} c
   */
  function td(r, c) {
    const v = g.values[r][c];
    const cls = [v === null ? "null" : "", edited.has(`${r},${column(c)}`) ? "edited" : ""]
      .join(" ")
      .trim();
    const style = v === null ? null : `background: ${tint(v, g.scale, sequential)}`;
    return el("td", { class: cls || null, "data-r": r, "data-c": c, style }, fmt(v));
  }

  const headRow = el("tr", {}, el("th", {}, ""));
  const tbody = el("tbody");
  const table = el("table", { class: "grid" }, el("thead", {}, headRow), tbody);
  const wrap = el("div", { class: "grid-wrap" }, table);
  const info = el("div", { class: "grid-info" });
  const chart = el("div", { class: "chart" });

  /** @param {number} from */
  const addColumns = (from) =>
    range(g.values[0].length - from).forEach((i) =>
      headRow.append(el("th", {}, colLabel(from + i))),
    );
  /** @param {number} from */
  const addRows = (from) =>
    range(g.values.length - from).forEach((i) => {
      const r = from + i;
      const cells = range(g.values[r].length).map((c) => td(r, c));
      tbody.append(el("tr", {}, el("th", {}, rowLabel(r)), cells));
    });
  function describeWindow() {
    const rows = g.values.length;
    const cols = g.values[0].length;
    const more = rows < g.rows || cols < g.columns ? " · scroll for more" : "";
    /** @param {string} axis */
    const what = (axis) => (AXES[axis] ? ` (${AXES[axis]})` : "");
    const which = head === null ? "" : `head ${head}: `;
    const order = view.sort
      ? `, ${view.sort.descending ? "largest" : "smallest"} first at position ${view.sort.row}`
      : "";
    const hint = editable ? " · double-click a number to change it" : "";
    info.textContent =
      `${which}rows 0–${rows - 1} of ${g.rows}${what(rowAxis)} · ` +
      `columns 0–${cols - 1} of ${g.columns}${what(colAxis)}${order}${more}${hint}`;
  }
  const redrawChart = () =>
    drawChart(chart, step, g, { rowLabel, colLabel, head, shown: shownWindow(wrap, table) });
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
        tbody.querySelectorAll("tr").forEach((/** @type {HTMLElement} */ tr, r) =>
          tr.append(...range(more.values[r].length).map((i) => td(r, cols + i))),
        );
      } else {
        return;
      }
      describeWindow();
      redrawChart();
    } catch (error) {
      info.textContent = /** @type {Error} */ (error).message;
    } finally {
      loading = false;
    }
  });

  if (editable) {
    table.addEventListener("dblclick", (/** @type {MouseEvent} */ event) => {
      const cellNode = /** @type {HTMLElement} */ (event.target).closest("td");
      if (!cellNode || cellNode.querySelector("input")) return;
      const [r, c] = [Number(cellNode.dataset.r), Number(cellNode.dataset.c)];
      const input = el("input", { type: "number", step: "any", value: g.values[r][c] ?? "" });
      cellNode.replaceChildren(input);
      input.focus();
      input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
        if (e.key === "Escape") cellNode.replaceChildren(fmt(g.values[r][c]));
        if (e.key !== "Enter" || input.value === "") return;
        addEdit({
          kind: "set_value",
          step: step.name,
          index: tensorIndex(r, c),
          value: Number(input.value),
        });
        actions.run(true);
      });
    });
  }
  const split = el("div", { class: "split" }, wrap, chart);
  container.replaceChildren(info, legend(g, sequential), split);
  redrawChart(); // now that the table is laid out, the heatmap can show what it shows
}

/**
 * The rows [r0, r1) and columns [c0, c1) of a table that can be seen in its scrolled box,
 * not counting the sticky labels.
 * @param {HTMLElement} wrap
 * @param {HTMLTableElement} table
 * @returns {Window}
 */
function shownWindow(wrap, table) {
  const headRow = /** @type {HTMLTableSectionElement} */ (table.tHead).rows[0];
  const rows = table.tBodies[0].rows;
  const top = wrap.scrollTop + headRow.offsetHeight;
  const bottom = wrap.scrollTop + wrap.clientHeight;
  const left = wrap.scrollLeft + headRow.cells[0].offsetWidth;
  const right = wrap.scrollLeft + wrap.clientWidth;
  /**
   * The first and one past the last of n items (at start(i), size(i) long) in [from, to].
   * @type {(n: number, start: (i: number) => number, size: (i: number) => number,
   *   from: number, to: number) => [number, number]}
   */
  const span = (n, start, size, from, to) => {
    let first = 0;
    while (first < n - 1 && start(first) + size(first) <= from + 2) first++;
    let last = first;
    while (last < n && start(last) < to - 2) last++;
    return [first, Math.max(last, first + 1)];
  };
  const [r0, r1] = span(
    rows.length,
    (r) => rows[r].offsetTop,
    (r) => rows[r].offsetHeight,
    top,
    bottom,
  );
  const cells = headRow.cells;
  const [c0, c1] = span(
    cells.length - 1,
    (c) => cells[c + 1].offsetLeft,
    (c) => cells[c + 1].offsetWidth,
    left,
    right,
  );
  return { r0, r1, c0, c1 };
}

/**
 * Red for positive, blue for negative (indigo for probabilities), as light tints so the
 * numbers stay readable; full tint from the clip value on.
 * @param {number} v
 * @param {number} scale
 * @param {boolean} sequential
 */
function tint(v, scale, sequential) {
  const x = Math.max(-1, Math.min(1, v / scale));
  const [r, g, b] = sequential ? [67, 56, 202] : x >= 0 ? [239, 68, 68] : [59, 130, 246];
  return `rgb(${r} ${g} ${b} / ${(Math.abs(x) * 0.35).toFixed(3)})`;
}

/**
 * The full colour of a heatmap square: white at 0, red or blue (indigo) at the clip value.
 * @param {number | null} v
 * @param {number} scale
 * @param {boolean} sequential
 */
function color(v, scale, sequential) {
  if (v === null) return "#e9ebef";
  const x = Math.max(-1, Math.min(1, v / scale));
  /** @type {(to: number[], t: number) => string} */
  const mix = (to, t) => `rgb(${to.map((c) => Math.round(255 + (c - 255) * t)).join(" ")})`;
  if (sequential) return mix([67, 56, 202], Math.abs(x));
  return x >= 0 ? mix([220, 38, 38], x) : mix([37, 99, 235], -x);
}

/**
 * @typedef {object} ChartLabels
 * @property {(r: number) => string} rowLabel
 * @property {(c: number) => string} colLabel
 * @property {number | null} head
 * @property {Window} shown the rows and columns the table shows
 */

/**
 * The chart beside a table: bars for one number per position, else a heatmap of the rows and
 * columns the table shows, with their labels.
 * @param {HTMLElement} chart
 * @param {StepInfo} step
 * @param {Loaded} g
 * @param {ChartLabels} labels
 */
function drawChart(chart, step, g, { rowLabel, colLabel, head, shown }) {
  if (step.name === "hook_logits" || step.name === "hook_probs") {
    chart.replaceChildren();
    return;
  }
  const { r0, r1, c0, c1 } = shown;
  const where = `Rows ${r0}–${r1 - 1} of ${g.rows}`;
  if (g.values[0].length === 1) {
    const values = /** @type {number[]} */ (g.values.map((row) => row[0]));
    const top = Math.max(...values.map((v) => Math.abs(v)));
    const items = range(r1 - r0).map((i) => ({
      label: rowLabel(r0 + i),
      value: values[r0 + i],
      text: fmt(values[r0 + i]),
    }));
    const negative = values.some((v) => v < 0) ? "; left of the axis: negative" : "";
    const rowsShown = r1 - r0 < g.rows ? ` ${where}: what the table shows; scroll it to move.` : "";
    chart.replaceChildren(
      bars(items, top),
      el("div", { class: "caption" }, `one number per position${negative}.${rowsShown}`),
    );
    return;
  }
  const sequential = isProbability(step.name);
  /** @param {number} r */
  const cells = (r) =>
    range(c1 - c0).map((i) => {
      const v = g.values[r][c0 + i];
      return el("td", {
        style: `background: ${color(v, g.scale, sequential)}`,
        title: `${rowLabel(r)} × ${colLabel(c0 + i)}: ${fmt(v)}`,
      });
    });
  const colHeads = range(c1 - c0).map((i) =>
    el("th", { class: "col" }, el("span", {}, colLabel(c0 + i))),
  );
  const heatmap = el(
    "table",
    { class: "heatmap", "data-rows": `${r0}-${r1 - 1}`, "data-cols": `${c0}-${c1 - 1}` },
    el("thead", {}, el("tr", {}, el("th", {}), colHeads)),
    el(
      "tbody",
      {},
      range(r1 - r0).map((i) => el("tr", {}, el("th", {}, rowLabel(r0 + i)), cells(r0 + i))),
    ),
  );
  const what = sequential
    ? `head ${head}: row = query position, column = key; darker = more attention. ` +
      "Above the diagonal: 0, the causal mask."
    : `red > 0 > blue${step.name.endsWith("hook_attn_scores") ? ", grey masked" : ""}.`;
  const whereBoth =
    `${where}, columns ${c0}–${c1 - 1} of ${g.columns}: what the table shows; scroll it to move.`;
  const caption = `${what} ${whereBoth} Hover for values.`;
  chart.replaceChildren(heatmap, el("div", { class: "caption" }, caption));
}
