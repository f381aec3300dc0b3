"""Terminal views: the table of named steps (``gpt2lab steps``) and an inspection of a prompt
(``gpt2lab inspect``) as rich tables."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from ..hooks import Step, short_name
from . import STEP_COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from ..generate import SamplingExplanation
    from ..inspection import Inspection
    from ..lens import LogitLens

_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")


def render_steps(steps: list[Step], console: Console, title: str) -> None:
    from rich.text import Text

    table = _table(title, "step", "shape", "formula")
    for step in steps:
        table.add_row(Text(step.name), Text(step.shape), Text(step.formula))
    console.print(table)
    console.print(Text("B batch, T positions, S keys, C width, H heads, D head size, V vocabulary"))


def _bar(p: float, width: int = 20) -> str:
    """A probability as a bar of block characters, to 1/8 of a character."""
    full, part = divmod(round(p * width * 8), 8)
    return "█" * full + _EIGHTHS[part]


def _table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A table whose title and headers print as written: Text, since a token such as "[b]"
    would otherwise be read as rich markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for col in columns:
        table.add_column(Text(col), justify="right" if col in right else "left")
    return table


def _tokens_table(ins: Inspection) -> Table:
    from rich.text import Text

    table = _table(f"{len(ins.ids)} tokens", "#", "token", "id", right=("#", "id"))
    for t, (token, i) in enumerate(zip(ins.tokens, ins.ids)):
        table.add_row(str(t), Text(repr(token)), str(i))
    return table


def _next_table(ins: Inspection) -> Table:
    from rich.text import Text

    table = _table(
        f"next token after {ins.tokens[-1]!r}", "token", "id", "p", "", right=("id", "p")
    )
    for token, i, p in zip(ins.next_tokens, ins.next_ids, ins.next_probs):
        table.add_row(Text(repr(token)), str(i), f"{p:.3f}", _bar(p))
    return table


def _lens_tables(lens: LogitLens) -> list[Table]:
    """The top token and its probability at every point and position; with a target, also its
    rank there."""
    short = {point: short_name(point) for point in lens.points}
    title = "logit lens: the most likely next token if the model stopped at each point"
    tables = [_frame_table(title, lens.to_frame("top").rename(index=short))]
    if lens.target_rank is not None:
        title = "rank of the target token (0: the top token; -1: no target there)"
        tables.append(_frame_table(title, lens.to_frame("rank").rename(index=short)))
    return tables


def _cell(value: object, digits: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{value:.{digits}f}"


def _frame_table(
    title: str, frame: pd.DataFrame, *, digits: int = 2, causal: bool = False, columns: int = 0
) -> Table:
    """A pandas table as a rich one: ``columns`` > 0 keeps that many columns and adds "…";
    ``causal`` leaves the cells above the diagonal (keys after the query) empty."""
    from rich.text import Text

    kept = frame.iloc[:, :columns] if 0 < columns < frame.shape[1] else frame
    more = ["…"] if kept is not frame else []
    names = [str(c) for c in kept.columns] + more
    table = _table(title, "", *names, right=tuple(names))
    for q, (label, row) in enumerate(kept.iterrows()):
        cells = [Text("" if causal and k > q else _cell(v, digits)) for k, v in enumerate(row)]
        table.add_row(Text(str(label)), *cells, *more)
    return table


def _sampling_table(ex: SamplingExplanation) -> Table:
    from rich.text import Text

    s = ex.settings
    title = (
        f"sampling the next token: temperature {s.temperature}, top-k {s.top_k or 'off'}, "
        f"top-p {s.top_p or 'off'}, seed {s.seed}"
    )
    columns = ("token", "id", "logit", "logit/T", "p before", "top-k", "top-p", "final p")
    table = _table(title, *columns, right=("id", "logit", "logit/T", "p before", "final p"))
    for r in ex.rows:
        table.add_row(
            Text(repr(r.token)),
            str(r.token_id),
            f"{r.logit:.3f}",
            f"{r.scaled_logit:.3f}",
            f"{r.prob_before:.3f}",
            "kept" if r.kept_top_k else "cut",
            "kept" if r.kept_top_p else "cut",
            f"{r.prob:.3f}",
        )
    return table


def render_inspection(ins: Inspection, console: Console) -> None:
    from rich.text import Text

    console.print(_tokens_table(ins))
    console.print(_next_table(ins))
    for table in _lens_tables(ins.lens):
        console.print(table)
    title = f"attention pattern of head {ins.head} in block {ins.layer} (rows: queries)"
    console.print(_frame_table(title, ins.attention, digits=2, causal=True))
    if ins.step is not None:
        step = ins.step
        which = "" if step.head is None else f", head {step.head}"
        console.print(Text(f"{step.name}  shape {list(step.values.shape)}{which}\n{step.formula}"))
        console.print(_frame_table(step.name, step.frame, digits=3, columns=STEP_COLUMNS))
    if ins.sampling is not None:
        ex = ins.sampling
        console.print(_sampling_table(ex))
        console.print(
            Text(
                f"top-k keeps {ex.kept_top_k} tokens, top-p {ex.effective_k} (the effective k), "
                f"{ex.mass_kept:.1%} of the probability; chosen: id {ex.chosen} "
                f"{ins.sampled_token!r} (p {ex.chosen_prob:.3f})"
            )
        )
