"""The workbook of formulas (gpt2lab.spreadsheet): its layout, Excel's limits, the command, and
LibreOffice recomputing it to the numbers of gpt2lab's trace, before and after an edit."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import pytest
import torch

import gpt2lab
from gpt2lab import spreadsheet as ss
from gpt2lab import trace as tr
from gpt2lab.cli import main
from gpt2lab.errors import TokenizerError, UsageError
from gpt2lab.hooks import describe, short_name, step_names
from gpt2lab.model import GPT2

PROMPT = "ROMEO:"
MASKED = float(ss.MASKED)


@pytest.fixture(scope="module")
def chars() -> GPT2:
    return gpt2lab.load("chars")


def test_chars_model_is_character_level(chars):
    tok = chars.tokenizer
    assert chars.config.vocab_size == tok.vocab_size == 63
    assert tok.encode("ROMEO:") == [28, 25, 23, 15, 25, 8]
    assert [tok.decode([i]) for i in tok.encode("a b\n")] == ["a", " ", "b", "\n"]
    with pytest.raises(TokenizerError, match="lacks"):
        tok.encode("Xerxes")  # no X in the text it was made from


def test_sheets_follow_the_steps_in_order(chars):
    plan = ss.plan_workbook(chars, PROMPT)
    names = [name for name, _, _ in plan.sheets]
    weights = [n.removeprefix("transformer.") for n, _ in chars.named_parameters()]
    steps = [short_name(n) for n in step_names(chars.config)]
    assert names == ["input", "vocabulary", *weights, *steps, "next token"]
    sizes = {name: (rows, cols) for name, rows, cols in plan.sheets}
    T, H = len(PROMPT), chars.config.n_head
    assert sizes["b1.attn.pattern"] == (ss.FIRST_ROW + T, ss.FIRST_COL + H * T)
    assert sizes["probs"] == (ss.FIRST_ROW + 63, ss.FIRST_COL + T)
    assert plan.numbers == chars.num_parameters()  # the weights are the only numbers
    assert "Excel's limits: 1,048,576 rows, 16,384 columns" in plan.summary()


def test_a_sheet_past_excels_columns_is_a_clear_error(chars):
    wide = GPT2(chars.config.replace(n_head=64, n_positions=300), chars.tokenizer)
    with pytest.raises(UsageError, match=r"'b0\.attn\.\w+' would need 266 rows x 16,642"):
        ss.plan_workbook(wide, "a" * 260).check()


def test_command_states_the_size_then_writes_formulas(chars, tmp_path, capsys):
    out = tmp_path / "chars.xlsx"
    assert main(["spreadsheet", PROMPT, "--model", "chars", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\d+ sheets, [\d,]+ numbers and [\d,]+ formulas: about [\d.]+ MB", printed)
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb["input"]["D7"].value == "R" and wb["input"]["E7"].value.text == (
        "=MATCH(TRUE,EXACT('vocabulary'!$B$7:$B$69,D7),0)-1"
    )
    q = wb["b0.attn.q"]["C7"].value  # a one-cell array formula: a matrix product
    assert q.ref == "C7"
    assert q.text == "=MMULT('b0.ln1.out'!$C7:$BN7,'h.0.attn.c_attn.weight'!C$7:C$70)" + (
        "+'h.0.attn.c_attn.bias'!C$7"
    )
    raw, masked = "blocks.0.attn.hook_unmasked_scores", "blocks.0.attn.hook_attn_scores"
    sheet = wb[short_name(masked)]
    assert sheet["D7"].value == f"=IF(D$6>$A7,-1E+30,'{short_name(raw)}'!D7)"
    assert sheet["A2"].value == masked
    assert wb["h.0.mlp.c_fc.weight"]["C7"].value == pytest.approx(
        chars.transformer.h[0].mlp.c_fc.weight[0, 0].item()
    )


# --- LibreOffice recomputes it ----------------------------------------------------------------
needs_soffice = pytest.mark.skipif(
    ss.soffice() is None, reason="LibreOffice (soffice) is not installed"
)


def sheet_values(ws, rows: int, cols: int) -> np.ndarray:
    cells = ws.iter_rows(
        min_row=ss.FIRST_ROW + 1,
        max_row=ss.FIRST_ROW + rows,
        min_col=ss.FIRST_COL + 1,
        max_col=ss.FIRST_COL + cols,
        values_only=True,
    )
    return np.array([[float(v) for v in row] for row in cells])


def as_laid_out(name: str, value: torch.Tensor) -> np.ndarray:
    """A traced step [1, ...] as its sheet lays it out, axes found from the symbolic shape
    (so it holds whatever order the trace keeps heads in): per-head steps [T, heads side by
    side], vocabulary-long ones [V, T], the others [T, channels]."""
    axes = describe(name).shape.strip("[]").split(", ")
    value = value[0].double()
    axes = axes[1:]  # the batch
    if "H" in axes:
        inner = next(a for a in axes if a not in ("T", "H"))
        value = value.permute(*(axes.index(a) for a in ("T", "H", inner)))
        value = value.reshape(value.shape[0], -1)
    elif "V" in axes:
        value = value.permute(axes.index("V"), axes.index("T"))
    return value.nan_to_num(neginf=MASKED).numpy()


def check_every_step(book: Path, trace) -> None:
    wb = openpyxl.load_workbook(book, data_only=True, read_only=True)
    for name in step_names(trace.config):
        expected = as_laid_out(name, trace[name])
        got = sheet_values(wb[short_name(name)], *expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5, err_msg=name)
    next_token = wb["next token"]
    last = ss.FIRST_ROW + trace.ids.shape[1]
    expected_id = int(trace["hook_logits"][0, -1].argmax())
    assert next_token[f"D{last}"].value == expected_id
    assert wb["input"]["E5"].value == expected_id
    wb.close()


@pytest.fixture(scope="module")
def book(chars, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("book") / "chars.xlsx"
    ss.write_workbook(chars, PROMPT, path)
    return path


@pytest.mark.slow
@needs_soffice
def test_libreoffice_computes_every_step_as_gpt2lab(chars, book, tmp_path):
    recomputed = ss.recalculate(book, tmp_path)
    check_every_step(recomputed, tr.run_with_cache(chars, PROMPT))


def edit_cell(book: Path, out: Path, sheet: str, cell: str, value) -> Path:
    wb = openpyxl.load_workbook(book)
    wb[sheet][cell] = value
    wb.save(out)
    return out


@pytest.mark.slow
@needs_soffice
def test_libreoffice_after_an_edit_matches_gpt2lab_with_the_same_edit(chars, book, tmp_path):
    # A token: the last character typed as "," instead of ":".
    edited = edit_cell(book, tmp_path / "token.xlsx", "input", "D12", ",")
    check_every_step(ss.recalculate(edited, tmp_path / "a"), tr.run_with_cache(chars, "ROMEO,"))

    # An activation overwritten with a number: stop at the step, change it, resume.
    name, t, c = "blocks.0.hook_resid_mid", 2, 7
    edited = edit_cell(book, tmp_path / "act.xlsx", short_name(name), "J9", 4.0)
    paused = tr.run_to(chars, PROMPT, name)
    new = paused.value.clone()
    new[0, t, c] = 4.0
    resumed = paused.resume(new)
    trace = tr.run_with_cache(chars, PROMPT, edits=[tr.set_to(name, new)])
    torch.testing.assert_close(resumed, trace["hook_logits"])
    check_every_step(ss.recalculate(edited, tmp_path / "b"), trace)

    # A weight: one entry of the first MLP layer.
    edited = edit_cell(book, tmp_path / "weight.xlsx", "h.0.mlp.c_fc.weight", "H10", 2.5)
    changed = gpt2lab.load("chars")
    with torch.no_grad():
        changed.transformer.h[0].mlp.c_fc.weight[3, 5] = 2.5
    check_every_step(ss.recalculate(edited, tmp_path / "c"), tr.run_with_cache(changed, PROMPT))


def test_command_refuses_a_character_the_model_lacks(tmp_path, capsys):
    out = tmp_path / "x.xlsx"
    assert main(["spreadsheet", "Xerxes", "--model", "chars", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpt2lab: error: 'Xerxes' has a character") and "\n" not in err
    assert not out.exists()
