"""The forward pass as a workbook of formulas: change any number and the prediction follows.

``write_workbook(model, "ROMEO:", "model.xlsx")`` writes one workbook that *computes* GPT-2 in
Excel or LibreOffice Calc, with no Python behind it:

    input        the prompt's tokens as text (type another one) and their ids, looked up
    vocabulary   every token's id and text
    wte.weight … the weights, one sheet per tensor, under their state-dict names (y = x @ W + b)
    embed …      one sheet per named step, in the order and under the (short) names of
                 ``gpt2lab steps``, each with its formula in words above its numbers
    next token   the most likely next token after every position

Every step sheet has the same layout: rows 1-6 say what it is (title, step name, formula, how
the cells are laid out, column labels), the numbers start at C7, and column A/B label the rows
(position and token; id and token on the vocabulary-long logits and probabilities, which keep one
column per position so that 50,257 tokens fit Excel's rows). Per-head steps put the heads side
by side: the columns of head h are h·D … h·D + D - 1 (h·T … for scores and patterns).

Only functions that both Excel and LibreOffice compute are used (INDEX, MATCH, EXACT, MMULT,
SUMPRODUCT, AVERAGE, VARP, MAX, EXP, SQRT, TANH, IF). A matrix product cell is a one-cell array
formula ``{=MMULT(row, column)}``, so any cell of any sheet can be overwritten with a number.
A spreadsheet has no -inf: the causal mask writes -1E+30, whose exponential is 0 all the same.

``plan_workbook`` says how big the workbook will be and checks Excel's limits before anything
is written; ``recalculate`` has LibreOffice recompute a workbook (the tests compare every step
with gpt2lab's trace that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xlsxwriter
from tqdm import tqdm
from xlsxwriter.utility import xl_rowcol_to_cell

from .errors import OutputError, UsageError
from .files import reason
from .hooks import describe, short_name, step_names
from .model import GPT2
from .prompts import Prompt, prompt_ids, tokenizer_of

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_SHEET_NAME = 31
FIRST_ROW = 6  # the numbers of every sheet start at C7 (0-based row 6, column 2)
FIRST_COL = 2
MASKED = "-1E+30"  # what the causal mask writes where the model writes -inf
# Bytes a cell takes in the compressed file, measured on gpt2lab's workbooks (an estimate).
BYTES_PER_NUMBER = 6
BYTES_PER_FORMULA = 50

Cell = Callable[[int, int], "str | float"]  # (row, column) of the numbers -> formula or value


@dataclass
class Sheet:
    """One sheet to write: a header of six rows, then ``rows`` x ``cols`` cells from C7."""

    name: str
    title: str
    what: str  # the full step or tensor name
    formula: str  # in words
    layout: str
    rows: int
    cols: int
    cell: Cell
    row_labels: Callable[[int], tuple[str | float, str]]  # column A, column B
    col_groups: Callable[[int], str | float] | None = None  # row 5 (heads), or None
    col_index: Callable[[int], str | float] = lambda c: c  # row 6
    # header rows that compute (row -> label in column B, cell function; None: no cell)
    extra_rows: dict[int, tuple[str, Callable[[int, int], str | None]]] = field(
        default_factory=dict
    )
    text_cols: frozenset[int] = frozenset()  # columns of typed text, not formulas
    integer_cols: frozenset[int] = frozenset()  # columns of whole numbers (ids, positions)
    widths: tuple[int, ...] = ()  # of the first columns from C (default 9 characters)
    formulas: bool = True  # False: the cells are numbers (weights)
    colour: bool = False  # a colour scale (patterns, probabilities)

    def range(self, r0: int, c0: int, r1: int, c1: int, *, fix_rows: bool, fix_cols: bool) -> str:
        """This sheet's cells r0..r1 x c0..c1 of the numbers, as ``'name'!$C$7:$E$9``."""
        first = xl_rowcol_to_cell(FIRST_ROW + r0, FIRST_COL + c0, fix_rows, fix_cols)
        last = xl_rowcol_to_cell(FIRST_ROW + r1, FIRST_COL + c1, fix_rows, fix_cols)
        return f"'{self.name}'!{first}" + (f":{last}" if (r0, c0) != (r1, c1) else "")

    def at(self, r: int, c: int, *, fix_row: bool = False, fix_col: bool = False) -> str:
        return self.range(r, c, r, c, fix_rows=fix_row, fix_cols=fix_col)

    def row(self, r: int, c0: int = 0, c1: int | None = None) -> str:
        """Row r of the numbers (columns fixed), from column c0 to c1 (default: the last)."""
        return self.range(
            r, c0, r, self.cols - 1 if c1 is None else c1, fix_rows=False, fix_cols=True
        )

    def col(self, c: int, r0: int = 0, r1: int | None = None) -> str:
        """Column c of the numbers (rows fixed), from row r0 to r1 (default: the last)."""
        return self.range(
            r0, c, self.rows - 1 if r1 is None else r1, c, fix_rows=True, fix_cols=False
        )

    def block(self) -> str:
        return self.range(0, 0, self.rows - 1, self.cols - 1, fix_rows=True, fix_cols=True)


@dataclass(frozen=True)
class WorkbookPlan:
    """What a workbook will hold: each sheet's name and size, and an estimate of the file."""

    sheets: tuple[tuple[str, int, int], ...]  # name, rows, columns (with the labels)
    numbers: int
    formulas: int

    @property
    def estimated_bytes(self) -> int:
        return self.numbers * BYTES_PER_NUMBER + self.formulas * BYTES_PER_FORMULA

    def check(self) -> None:
        """Raise UsageError if a sheet exceeds Excel's 1,048,576 rows or 16,384 columns."""
        for name, rows, cols in self.sheets:
            if rows > EXCEL_MAX_ROWS or cols > EXCEL_MAX_COLUMNS:
                raise UsageError(
                    f"sheet {name!r} would need {rows:,} rows x {cols:,} columns; Excel and "
                    f"LibreOffice allow {EXCEL_MAX_ROWS:,} x {EXCEL_MAX_COLUMNS:,} (a shorter "
                    "prompt or a smaller model fits)"
                )

    def summary(self) -> str:
        widest = max(self.sheets, key=lambda s: s[2])
        longest = max(self.sheets, key=lambda s: s[1])
        return (
            f"{len(self.sheets)} sheets, {self.numbers:,} numbers and {self.formulas:,} formulas:"
            f" about {self.estimated_bytes / 1e6:,.1f} MB. Largest sheets: {longest[0]!r} "
            f"{longest[1]:,} rows, {widest[0]!r} {widest[2]:,} columns (Excel's limits: "
            f"{EXCEL_MAX_ROWS:,} rows, {EXCEL_MAX_COLUMNS:,} columns)"
        )


# --- the sheets -------------------------------------------------------------------------------
class _Book:
    """The sheets of one workbook, built in order; each step's cells refer to earlier sheets."""

    def __init__(self, model: GPT2, ids: list[int]) -> None:
        self.model = model
        self.config = model.config
        self.ids = ids
        self.T = len(ids)
        tok = tokenizer_of(model)
        self.vocab = [_token_text(tok, i) for i in range(self.config.vocab_size)]
        self.sheets: dict[str, Sheet] = {}
        self.params = {n.removeprefix("transformer."): p for n, p in model.named_parameters()}

    def add(self, sheet: Sheet) -> Sheet:
        if len(sheet.name) > EXCEL_MAX_SHEET_NAME:
            raise UsageError(f"sheet name {sheet.name!r} is longer than Excel's 31 characters")
        self.sheets[sheet.name] = sheet
        return sheet

    def by_position(self, c: int) -> tuple[str | float, str]:
        return c, self.vocab[self.ids[c]]

    # --- input, vocabulary, weights -----------------------------------------------------------
    def build(self) -> Iterator[Sheet]:
        yield self.input_sheet()
        yield self.vocab_sheet()
        for name in self.params:
            yield self.weight_sheet(name)
        for name in step_names(self.config):
            yield self.step_sheet(name)
        yield self.next_token_sheet()

    def input_sheet(self) -> Sheet:
        vocab = "'vocabulary'!$B$7:" + xl_rowcol_to_cell(
            FIRST_ROW + len(self.vocab) - 1, 1, True, True
        )
        cols = ["position", "token (type another)", "id"]

        def cell(r: int, c: int) -> str | float:
            if c == 0:
                return float(r)
            if c == 1:
                return self.vocab[self.ids[r]]
            token = xl_rowcol_to_cell(FIRST_ROW + r, FIRST_COL + 1)
            return f"{{=MATCH(TRUE,EXACT({vocab},{token}),0)-1}}"

        last = FIRST_ROW + self.T  # the next-token sheet's last row, 1-based

        def prediction(r: int, c: int) -> str | None:
            return {1: f"='next token'!$E${last}", 2: f"='next token'!$D${last}"}.get(c)

        return self.add(
            Sheet(
                "input",
                "The prompt: type over a token",
                "id: the token's row in 'vocabulary' (case counts)",
                "id = MATCH(TRUE, EXACT(vocabulary, token), 0) - 1",
                "one row per position; every sheet follows the tokens",
                self.T,
                3,
                cell,
                lambda r: ("", ""),
                col_index=lambda c: cols[c],
                extra_rows={FIRST_ROW - 2: ("next token:", prediction)},
                text_cols=frozenset({1}),
                integer_cols=frozenset({0, 2}),
                widths=(9, 22, 10),
            )
        )

    def vocab_sheet(self) -> Sheet:
        return self.add(
            Sheet(
                "vocabulary",
                "The vocabulary: id and text of every token",
                f"{len(self.vocab):,} tokens",
                "the tokenizer's table (text as typed on the input sheet)",
                "one row per token; column C shows white space: \\n a new line, ␣ a space",
                len(self.vocab),
                1,
                lambda r, c: _shown(self.vocab[r]),
                lambda r: (r, self.vocab[r]),
                col_index=lambda c: "shown as",
                formulas=False,
                text_cols=frozenset({0}),
            )
        )

    def weight_sheet(self, name: str) -> Sheet:
        param = self.params[name]
        w = param if param.dim() == 2 else param[None, :]
        rows: dict[int, list[float]] = {}  # the row being written (weights can be large)

        def cell(r: int, c: int) -> float:
            if r not in rows:
                rows.clear()
                rows[r] = w[r].detach().float().cpu().tolist()
            return rows[r][c]

        wte = name == "wte.weight"
        matrix = param.dim() == 2
        what = "W stored [in, out]: y = x @ W + b" if matrix else "a vector, one per channel"
        if wte:
            what = "one row per token; also the output layer (logits = x @ W_Eᵀ)"
        elif name == "wpe.weight":
            what = "one row per position"
        return self.add(
            Sheet(
                name,
                f"Weights {name} {list(param.shape)}",
                f"transformer.{name}",
                what,
                "numbers: change one and every step that reads it recomputes",
                w.shape[0],
                w.shape[1],
                cell,
                (lambda r: (r, self.vocab[r])) if wte else (lambda r: (r, "")),
                formulas=False,
            )
        )

    # --- the steps ----------------------------------------------------------------------------
    def step_sheet(self, name: str) -> Sheet:
        step = describe(name)
        template = step.name.replace("{L}.", "")
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else None
        build = _STEP_CELLS.get(template)
        if build is None:
            raise UsageError(f"the spreadsheet has no formulas for step {name}")
        cols, cell, extra = build(self, layer, name)
        sheet = Sheet(
            short_name(name),
            step.title,
            name,
            step.formula,
            extra.get("layout", "one row per position; one column per channel"),
            extra.get("rows", self.T),
            cols,
            cell,
            extra.get("row_labels", self.by_position),
            col_groups=extra.get("col_groups"),
            col_index=extra.get("col_index", lambda c: c),
            extra_rows=extra.get("extra_rows", {}),
            colour=extra.get("colour", False),
        )
        if "note" in extra:
            sheet.formula += f"  ({extra['note']})"
        return self.add(sheet)

    def s(self, name: str) -> Sheet:
        """The sheet of step ``name`` (full name)."""
        return self.sheets[short_name(name)]

    def w(self, name: str) -> Sheet:
        return self.sheets[name]

    def head_size(self) -> int:
        return self.config.n_embd // self.config.n_head

    def next_token_sheet(self) -> Sheet:
        probs = self.sheets[short_name("hook_probs")]
        shown = self.sheets["vocabulary"].col(0)
        cols = ["token", "next id", "next token", "probability"]

        def cell(r: int, c: int) -> str:
            column = probs.col(r)
            row = FIRST_ROW + r + 1
            return [
                f"='input'!$D${row}",
                f"=MATCH(MAX({column}),{column},0)-1",
                f"=INDEX({shown},$D{row}+1)",
                f"=MAX({column})",
            ][c]

        return self.add(
            Sheet(
                "next token",
                "The most likely next token after each position",
                "argmax of probs",
                "id = MATCH(MAX(p), p, 0) - 1 over the probabilities of that position",
                "one row per position; the last row is the prediction for the prompt",
                self.T,
                4,
                cell,
                lambda r: (r, ""),
                col_index=lambda c: cols[c],
                integer_cols=frozenset({1}),
                widths=(8, 8, 11, 11),
            )
        )


def _shown(text: str) -> str:
    """A token's text with its white space made visible: "\\n" for a new line, "␣" for a
    space at either end (a cell would show neither)."""
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    if text.startswith(" "):
        text = "␣" + text[1:]
    if text.endswith(" ") and len(text) > 1:
        text = text[:-1] + "␣"
    return text


def _token_text(tokenizer, token_id: int) -> str:
    """A token as people type it: its text, or its vocabulary entry when the text is not
    whole characters (part of a UTF-8 sequence) or holds control characters."""
    raw = tokenizer.token_bytes(token_id)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return tokenizer.id_to_token(token_id)
    if any(ord(ch) < 32 and ch != "\n" for ch in text):
        return tokenizer.id_to_token(token_id)
    return text


def _x_of(book: _Book, layer: int | None, name: str) -> Sheet:
    """The input of a layer norm: resid_pre (ln1), resid_mid (ln2), the last resid_post."""
    if name.startswith("ln_final"):
        return book.s(f"blocks.{book.config.n_layer - 1}.hook_resid_post")
    part = "hook_resid_pre" if ".ln1." in name else "hook_resid_mid"
    return book.s(f"blocks.{layer}.{part}")


def _ln_prefix(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _ln_params(book: _Book, name: str) -> tuple[Sheet, Sheet]:
    prefix = _ln_prefix(name)
    if prefix == "ln_final":
        key = "ln_f"
    else:
        layer, which = prefix.split(".")[1], prefix.split(".")[2]
        key = f"h.{layer}.ln_{which[-1]}"
    return book.w(f"{key}.weight"), book.w(f"{key}.bias")


def _embed(book: _Book, layer: int | None, name: str):
    table = book.w("wte.weight")
    which = "$E" if name == "hook_embed" else "$C"  # the id, or the position, on the input sheet
    if name == "hook_pos_embed":
        table = book.w("wpe.weight")

    def cell(r: int, c: int) -> str:
        return f"=INDEX({table.block()},'input'!{which}${FIRST_ROW + r + 1}+1,{c + 1})"

    return book.config.n_embd, cell, {}


def _resid_pre(book: _Book, layer: int | None, name: str):
    assert layer is not None
    if layer == 0:
        emb, pos = book.s("hook_embed"), book.s("hook_pos_embed")
        return book.config.n_embd, lambda r, c: f"={emb.at(r, c)}+{pos.at(r, c)}", {}
    prev = book.s(f"blocks.{layer - 1}.hook_resid_post")
    return book.config.n_embd, lambda r, c: f"={prev.at(r, c)}", {}


def _ln_mean(book: _Book, layer: int | None, name: str):
    x = _x_of(book, layer, name)
    return 1, lambda r, c: f"=AVERAGE({x.row(r)})", {}


def _ln_var(book: _Book, layer: int | None, name: str):
    x = _x_of(book, layer, name)
    return 1, lambda r, c: f"=VARP({x.row(r)})", {"note": "VARP: the mean of squared deviations"}


def _ln_scale(book: _Book, layer: int | None, name: str):
    var = book.s(_ln_prefix(name) + ".hook_var")
    eps = repr(book.config.layer_norm_epsilon)
    return 1, lambda r, c: f"=SQRT({var.at(r, 0)}+{eps})", {"note": f"ε = {eps}"}


def _ln_normalized(book: _Book, layer: int | None, name: str):
    x = _x_of(book, layer, name)
    prefix = _ln_prefix(name)
    mean, scale = book.s(prefix + ".hook_mean"), book.s(prefix + ".hook_scale")

    def cell(r: int, c: int) -> str:
        m, sd = mean.at(r, 0, fix_col=True), scale.at(r, 0, fix_col=True)
        return f"=({x.at(r, c)}-{m})/{sd}"

    return book.config.n_embd, cell, {}


def _ln_out(book: _Book, layer: int | None, name: str):
    x_hat = book.s(_ln_prefix(name) + ".hook_normalized")
    g, b = _ln_params(book, name)

    def cell(r: int, c: int) -> str:
        return f"={x_hat.at(r, c)}*{g.at(0, c, fix_row=True)}+{b.at(0, c, fix_row=True)}"

    return book.config.n_embd, cell, {}


def _matmul(x: Sheet, w: Sheet, b: Sheet, offset: int = 0) -> Cell:
    """y[r, c] = x[r, :] @ W[:, offset + c] + b[offset + c], one array formula per cell."""

    def cell(r: int, c: int) -> str:
        return f"{{=MMULT({x.row(r)},{w.col(offset + c)})+{b.at(0, offset + c, fix_row=True)}}}"

    return cell


def _head_layout(book: _Book, inner: str) -> dict:
    D = book.head_size()
    size = D if inner == "d" else book.T
    return {
        "layout": f"one row per position (query); head h in columns h·{size} … h·{size} + "
        f"{size - 1}, one per {'channel of the head' if inner == 'd' else 'key position'}",
        "col_groups": lambda c: f"head {c // size}",
        "col_index": lambda c: c % size,
    }


def _qkv(book: _Book, layer: int | None, name: str):
    which = name.rsplit("_", 1)[1]  # q, k or v
    offset = "qkv".index(which) * book.config.n_embd
    x = book.s(f"blocks.{layer}.ln1.hook_out")
    w, b = book.w(f"h.{layer}.attn.c_attn.weight"), book.w(f"h.{layer}.attn.c_attn.bias")
    return book.config.n_embd, _matmul(x, w, b, offset), _head_layout(book, "d")


def _scores(book: _Book, layer: int | None, name: str):
    H, D = book.config.n_head, book.head_size()
    T = book.T
    q, k = book.s(f"blocks.{layer}.attn.hook_q"), book.s(f"blocks.{layer}.attn.hook_k")

    def cell(r: int, c: int) -> str:
        h, s = divmod(c, T)
        return (
            f"=SUMPRODUCT({q.row(r, h * D, h * D + D - 1)},{k.row(s, h * D, h * D + D - 1)})"
            f"/SQRT({D})"
        )

    return H * T, cell, _head_layout(book, "s")


def _masked(book: _Book, layer: int | None, name: str):
    scores = book.s(f"blocks.{layer}.attn.hook_unmasked_scores")

    def cell(r: int, c: int) -> str:
        key = xl_rowcol_to_cell(FIRST_ROW - 1, FIRST_COL + c, True, False)
        query = xl_rowcol_to_cell(FIRST_ROW + r, 0, False, True)
        return f"=IF({key}>{query},{MASKED},{scores.at(r, c)})"

    extra = _head_layout(book, "s")
    extra["note"] = f"a spreadsheet has no -inf: {MASKED} stands for it"
    return book.config.n_head * book.T, cell, extra


def _pattern(book: _Book, layer: int | None, name: str):
    T = book.T
    m = book.s(f"blocks.{layer}.attn.hook_attn_scores")

    def cell(r: int, c: int) -> str:
        h = c // T
        row = m.row(r, h * T, h * T + T - 1)
        return f"=EXP({m.at(r, c)}-MAX({row}))/SUMPRODUCT(EXP({row}-MAX({row})))"

    extra = _head_layout(book, "s")
    extra["colour"] = True
    return book.config.n_head * T, cell, extra


def _z(book: _Book, layer: int | None, name: str):
    D = book.head_size()
    T = book.T
    pattern = book.s(f"blocks.{layer}.attn.hook_pattern")
    v = book.s(f"blocks.{layer}.attn.hook_v")

    def cell(r: int, c: int) -> str:
        h = c // D
        return f"{{=MMULT({pattern.row(r, h * T, h * T + T - 1)},{v.col(c)})}}"

    return book.config.n_embd, cell, _head_layout(book, "d")


def _attn_out(book: _Book, layer: int | None, name: str):
    z = book.s(f"blocks.{layer}.attn.hook_z")
    w, b = book.w(f"h.{layer}.attn.c_proj.weight"), book.w(f"h.{layer}.attn.c_proj.bias")
    return book.config.n_embd, _matmul(z, w, b), {"note": "z's row is the heads side by side"}


def _sum_of(first: str, second: str):
    def build(book: _Book, layer: int | None, name: str):
        a, b = book.s(f"blocks.{layer}.{first}"), book.s(f"blocks.{layer}.{second}")
        return book.config.n_embd, lambda r, c: f"={a.at(r, c)}+{b.at(r, c)}", {}

    return build


def _mlp_pre(book: _Book, layer: int | None, name: str):
    x = book.s(f"blocks.{layer}.ln2.hook_out")
    w, b = book.w(f"h.{layer}.mlp.c_fc.weight"), book.w(f"h.{layer}.mlp.c_fc.bias")
    return (
        4 * book.config.n_embd,
        _matmul(x, w, b),
        {"layout": "one row per position; one column per neuron"},
    )


def _mlp_post(book: _Book, layer: int | None, name: str):
    pre = book.s(f"blocks.{layer}.mlp.hook_pre")

    def cell(r: int, c: int) -> str:
        x = pre.at(r, c)
        return f"=0.5*{x}*(1+TANH(SQRT(2/PI())*({x}+0.044715*{x}^3)))"

    note = "0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))"
    return (
        4 * book.config.n_embd,
        cell,
        {"note": note, "layout": "one row per position; one column per neuron"},
    )


def _mlp_out(book: _Book, layer: int | None, name: str):
    x = book.s(f"blocks.{layer}.mlp.hook_post")
    w, b = book.w(f"h.{layer}.mlp.c_proj.weight"), book.w(f"h.{layer}.mlp.c_proj.bias")
    return book.config.n_embd, _matmul(x, w, b), {}


def _by_token(book: _Book) -> dict:
    return {
        "rows": book.config.vocab_size,
        "layout": "one row per token of the vocabulary; one column per position",
        "row_labels": lambda r: (r, book.vocab[r]),
        "col_groups": lambda c: book.vocab[book.ids[c]],
    }


def _logits(book: _Book, layer: int | None, name: str):
    wte, x = book.w("wte.weight"), book.s("ln_final.hook_out")
    return book.T, lambda r, c: f"=SUMPRODUCT({wte.row(r)},{x.row(c)})", _by_token(book)


def _probs(book: _Book, layer: int | None, name: str):
    logits = book.s("hook_logits")

    def helper_max(r: int, c: int) -> str:
        return f"=MAX({logits.col(c)})"

    def helper_sum(r: int, c: int) -> str:
        top = xl_rowcol_to_cell(FIRST_ROW - 3, FIRST_COL + c, True, False)
        return f"=SUMPRODUCT(EXP({logits.col(c)}-{top}))"

    def cell(r: int, c: int) -> str:
        top = xl_rowcol_to_cell(FIRST_ROW - 3, FIRST_COL + c, True, False)
        total = xl_rowcol_to_cell(FIRST_ROW - 2, FIRST_COL + c, True, False)
        return f"=EXP({logits.at(r, c)}-{top})/{total}"

    extra = _by_token(book)
    extra.pop("col_groups")
    extra["extra_rows"] = {
        FIRST_ROW - 3: ("max logit", helper_max),
        FIRST_ROW - 2: ("Σ exp(logit - max)", helper_sum),
    }
    extra["colour"] = True
    extra["note"] = "= exp(logit - max) / Σ exp(logit - max), with the helper rows 4 and 5"
    return book.T, cell, extra


_STEP_CELLS: dict[str, Callable[[_Book, int | None, str], tuple[int, Cell, dict]]] = {
    "hook_embed": _embed,
    "hook_pos_embed": _embed,
    "blocks.hook_resid_pre": _resid_pre,
    "blocks.ln1.hook_mean": _ln_mean,
    "blocks.ln1.hook_var": _ln_var,
    "blocks.ln1.hook_scale": _ln_scale,
    "blocks.ln1.hook_normalized": _ln_normalized,
    "blocks.ln1.hook_out": _ln_out,
    "blocks.attn.hook_q": _qkv,
    "blocks.attn.hook_k": _qkv,
    "blocks.attn.hook_v": _qkv,
    "blocks.attn.hook_unmasked_scores": _scores,
    "blocks.attn.hook_attn_scores": _masked,
    "blocks.attn.hook_pattern": _pattern,
    "blocks.attn.hook_z": _z,
    "blocks.hook_attn_out": _attn_out,
    "blocks.hook_resid_mid": _sum_of("hook_resid_pre", "hook_attn_out"),
    "blocks.ln2.hook_mean": _ln_mean,
    "blocks.ln2.hook_var": _ln_var,
    "blocks.ln2.hook_scale": _ln_scale,
    "blocks.ln2.hook_normalized": _ln_normalized,
    "blocks.ln2.hook_out": _ln_out,
    "blocks.mlp.hook_pre": _mlp_pre,
    "blocks.mlp.hook_post": _mlp_post,
    "blocks.hook_mlp_out": _mlp_out,
    "blocks.hook_resid_post": _sum_of("hook_resid_mid", "hook_mlp_out"),
    "ln_final.hook_mean": _ln_mean,
    "ln_final.hook_var": _ln_var,
    "ln_final.hook_scale": _ln_scale,
    "ln_final.hook_normalized": _ln_normalized,
    "ln_final.hook_out": _ln_out,
    "hook_logits": _logits,
    "hook_probs": _probs,
}


# --- planning and writing ---------------------------------------------------------------------
def _sheets(model: GPT2, prompt: Prompt) -> list[Sheet]:
    changed = model.config.changes_from_gpt2()
    if changed:  # its formulas are GPT-2's: LayerNorm before, learned positions, GELU, ...
        raise UsageError(
            f"the spreadsheet lays out GPT-2's architecture; this model has {', '.join(changed)}"
        )
    ids = prompt_ids(model, prompt)
    if len(ids) > model.config.n_positions:
        raise UsageError(
            f"the prompt has {len(ids)} tokens; the model's context is {model.config.n_positions}"
        )
    return list(_Book(model, ids).build())


def _plan(sheets: list[Sheet]) -> WorkbookPlan:
    numbers = sum(s.rows * s.cols for s in sheets if not s.formulas and not s.text_cols)
    formulas = sum(s.rows * s.cols + len(s.extra_rows) * s.cols for s in sheets if s.formulas)
    return WorkbookPlan(
        tuple((s.name, FIRST_ROW + s.rows, FIRST_COL + s.cols) for s in sheets), numbers, formulas
    )


def plan_workbook(model: GPT2, prompt: Prompt) -> WorkbookPlan:
    """The sheets ``write_workbook`` would write for this prompt, their sizes and an estimate of
    the file's size; nothing is written. ``plan.check()`` tests Excel's limits."""
    return _plan(_sheets(model, prompt))


def write_workbook(
    model: GPT2,
    prompt: Prompt,
    path: str | Path,
    *,
    progress: bool = False,
    before_writing: Callable[[WorkbookPlan], None] | None = None,
) -> WorkbookPlan:
    """Write the workbook that computes ``model`` on ``prompt`` with formulas (see the module's
    docstring); returns its plan. Excel's limits are checked first (UsageError), and
    ``before_writing(plan)`` is called before the first byte (the command prints the size).
    The file appears whole or not at all."""
    sheets = _sheets(model, prompt)
    plan = _plan(sheets)
    plan.check()
    if before_writing is not None:
        before_writing(plan)
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    options = {"constant_memory": True, "use_zip64": plan.estimated_bytes > 2**31}
    try:
        workbook = xlsxwriter.Workbook(str(tmp), options)
        formats = _Formats(workbook)
        rows = sum(FIRST_ROW + s.rows for s in sheets)
        with tqdm(total=rows, unit="row", desc="workbook", disable=not progress) as bar:
            for sheet in sheets:
                _write_sheet(workbook.add_worksheet(sheet.name), sheet, formats, bar)
        workbook.close()
        os.replace(tmp, path)
    except (OSError, xlsxwriter.exceptions.XlsxWriterException) as e:
        raise OutputError(f"cannot write {path}: {reason(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return plan


class _Formats:
    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.title = workbook.add_format({"bold": True, "font_size": 13})
        self.note = workbook.add_format({"italic": True, "font_color": "#555555"})
        self.label = workbook.add_format({"bold": True, "font_color": "#1F4E79"})
        self.number = workbook.add_format({"num_format": "0.0000"})
        self.integer = workbook.add_format({"num_format": "0"})
        self.text = workbook.add_format({"bg_color": "#FFF2CC"})  # cells made to be typed in


def _write_sheet(ws, sheet: Sheet, fmt: _Formats, bar: tqdm) -> None:
    """Rows in order (the workbook is written in constant memory: a row, once left, is done)."""
    ws.write_string(0, 0, sheet.title, fmt.title)
    ws.write_string(1, 0, sheet.what, fmt.note)
    ws.write_string(2, 0, f"formula: {sheet.formula}")
    ws.write_string(3, 0, sheet.layout, fmt.note)
    for r in (3, 4):
        if r in sheet.extra_rows:
            label, helper = sheet.extra_rows[r]
            ws.write_string(r, 1, label, fmt.label)
            for c in range(sheet.cols):
                value = helper(r, c)
                if value is not None:
                    ws.write_formula(r, FIRST_COL + c, value, fmt.label)
        elif r == 4 and sheet.col_groups is not None:
            for c in range(sheet.cols):
                _write_label(ws, r, FIRST_COL + c, sheet.col_groups(c), fmt.label)
    for c in range(sheet.cols):
        _write_label(ws, FIRST_ROW - 1, FIRST_COL + c, sheet.col_index(c), fmt.label)
    bar.update(FIRST_ROW)
    for r in range(sheet.rows):
        row = FIRST_ROW + r
        a, b = sheet.row_labels(r)
        _write_label(ws, row, 0, a, fmt.label)
        _write_label(ws, row, 1, b, fmt.label)
        for c in range(sheet.cols):
            content = sheet.cell(r, c)
            col = FIRST_COL + c
            number = fmt.integer if c in sheet.integer_cols else fmt.number
            if isinstance(content, float):
                ws.write_number(row, col, content, number)
            elif c in sheet.text_cols:
                ws.write_string(row, col, content, fmt.text if sheet.formulas else fmt.note)
            elif content.startswith("{"):
                ws.write_array_formula(row, col, row, col, content, number)
            else:
                ws.write_formula(row, col, content, number)
        bar.update(1)
    ws.freeze_panes(FIRST_ROW, FIRST_COL)
    ws.set_column(0, 0, 6)
    ws.set_column(1, 1, 12)
    ws.set_column(FIRST_COL, FIRST_COL + max(sheet.cols, 1) - 1, 9)
    for c, width in enumerate(sheet.widths):
        ws.set_column(FIRST_COL + c, FIRST_COL + c, width)
    if sheet.colour and sheet.rows and sheet.cols:
        ws.conditional_format(
            FIRST_ROW,
            FIRST_COL,
            FIRST_ROW + sheet.rows - 1,
            FIRST_COL + sheet.cols - 1,
            {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#5B9BD5"},
        )


def _write_label(ws, row: int, col: int, value: str | float, fmt) -> None:
    if isinstance(value, str):
        if value:
            ws.write_string(row, col, value, fmt)
    else:
        ws.write_number(row, col, value, fmt)


# --- recalculation by LibreOffice -------------------------------------------------------------
# LibreOffice keeps the values stored in an .xlsx unless told to recompute on load; a fresh
# profile with this setting (0 = always) makes every conversion a full recalculation.
_RECALC_ON_LOAD = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" \
xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def soffice() -> str | None:
    """The LibreOffice command, if installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def recalculate(
    path: str | Path, out_dir: str | Path, *, to: str = "xlsx", timeout: float = 600
) -> Path:
    """Have LibreOffice (headless) open ``path``, recompute every formula and save it as ``to``
    (xlsx, ods, pdf, png: the active sheet) in ``out_dir``; returns the new file's path."""
    command = soffice()
    if command is None:
        raise UsageError(
            "LibreOffice is not installed (no soffice command); install "
            "libreoffice-calc to recalculate workbooks"
        )
    path, out_dir = Path(path).resolve(), Path(out_dir)
    out = out_dir / f"{path.stem}.{to.split(':')[0]}"
    with tempfile.TemporaryDirectory(prefix="gpt2lab-lo-") as profile:
        (Path(profile) / "user").mkdir()
        (Path(profile) / "user" / "registrymodifications.xcu").write_text(_RECALC_ON_LOAD)
        args = [
            command,
            f"-env:UserInstallation={Path(profile).as_uri()}",
            "--headless",
            "--convert-to",
            to,
            "--outdir",
            str(out_dir),
            str(path),
        ]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OutputError(f"LibreOffice took over {timeout:.0f} s on {path}") from None
    if done.returncode != 0 or not out.is_file():
        raise OutputError(f"LibreOffice could not convert {path}: {done.stderr.strip()[-300:]}")
    return out
