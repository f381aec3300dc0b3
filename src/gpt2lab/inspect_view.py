"""Terminal views of GPT-2's insides: the table of named steps and `gpt2lab inspect`.

``step_table`` and ``inspect_prompt`` gather library results (the STEPS table, one traced forward
pass, the logit lens, the sampling lab) into plain objects; ``render_steps`` and
``render_inspection`` draw them as rich tables. The CLI only parses arguments and prints these.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import UsageError, check_index
from .hooks import STEPS, Step, describe, short_name

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table
    from torch import Tensor

    from .config import GPT2Config
    from .generate import SamplingExplanation, SamplingSettings
    from .lens import LogitLens
    from .model import GPT2
    from .trace import Trace

STEP_COLUMNS = 8  # channels of a step shown in the terminal; --json has them all
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")


# --- gpt2lab steps ----------------------------------------------------------------------------
def _sized(shape: str, config: GPT2Config) -> str:
    """The model's sizes in a symbolic shape: [B, H, T, D] -> [B, 12, T, 64]. B, T and S stay:
    they depend on the input."""
    sizes = {
        "C": config.n_embd,
        "4C": 4 * config.n_embd,
        "H": config.n_head,
        "D": config.head_dim,
        "V": config.vocab_size,
    }
    return "[" + ", ".join(str(sizes.get(d, d)) for d in shape.strip("[]").split(", ")) + "]"


def step_table(config: GPT2Config | None = None, layer: int | None = None) -> list[Step]:
    """Every named step in forward order: names with ``{L}`` (or block ``layer``'s full names),
    shapes with the model's sizes (C, 4C, H, D, V) filled in when ``config`` is given."""
    if layer is not None:
        check_index("layer", layer, math.inf if config is None else config.n_layer)
    return [
        Step(
            step.name if layer is None else step.name.replace("{L}", str(layer)),
            step.shape if config is None else _sized(step.shape, config),
            step.formula,
        )
        for step in STEPS
    ]


def render_steps(steps: list[Step], console: Console, title: str) -> None:
    from rich.text import Text

    table = _table(title, "step", "shape", "formula")
    for step in steps:
        table.add_row(Text(step.name), Text(step.shape), Text(step.formula))
    console.print(table)
    console.print(Text("B batch, T positions, S keys, C width, H heads, D head size, V vocabulary"))


# --- gpt2lab inspect --------------------------------------------------------------------------
@dataclass(frozen=True)
class StepValues:
    """The value of one step for the prompt: ``values`` as traced ([1, ...]) and ``frame``, a
    table of it (one head's, for per-head steps)."""

    name: str
    formula: str
    values: Tensor
    frame: pd.DataFrame
    head: int | None


@dataclass(frozen=True)
class ModelFacts:
    """Which model ran and its size, so that a saved report says what it shows."""

    name: str  # as it was asked for: a bundled name, a folder or a Hub id ("" when not given)
    n_layer: int
    n_head: int
    n_embd: int  # the width of the residual stream
    n_positions: int
    vocab_size: int
    parameters: int
    dtype: str  # of the weights, e.g. "float32"
    quantized: str | None  # "int8" after quantize("int8")
    device: str

    @classmethod
    def of(cls, model: GPT2, name: str | None = None) -> ModelFacts:
        """The facts of ``model``; ``name``: how it was loaded (the model does not know)."""
        config = model.config
        return cls(
            name=name or "",
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_embd=config.n_embd,
            n_positions=config.n_positions,
            vocab_size=config.vocab_size,
            parameters=model.num_parameters(),
            dtype=str(model.transformer.wte.weight.dtype).removeprefix("torch."),
            quantized=model.quantized,
            device=str(model.device),
        )


@dataclass(frozen=True)
class Inspection:
    """What ``gpt2lab inspect`` shows for one prompt, from a single traced forward pass."""

    tokens: list[str]
    ids: list[int]
    next_ids: list[int]  # the ``top`` most likely next tokens after the last position
    next_tokens: list[str]
    next_probs: list[float]
    lens: LogitLens
    layer: int
    head: int
    attention: pd.DataFrame  # [T queries, T keys]: head ``head`` of block ``layer``
    step: StepValues | None
    sampling: SamplingExplanation | None
    sampled_token: str | None  # the text of ``sampling.chosen``
    model: ModelFacts
    prompt: str
    top: int
    target: str | None
    patterns: Trace | None = None  # every head's pattern (``all_heads=True``), for an overview

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "ids": self.ids,
            "next": {"ids": self.next_ids, "tokens": self.next_tokens, "probs": self.next_probs},
            "lens": self.lens.to_dict(),
            "attention": {
                "layer": self.layer,
                "head": self.head,
                "pattern": self.attention.to_numpy().tolist(),
            },
            "step": None
            if self.step is None
            else {
                "name": self.step.name,
                "shape": list(self.step.values.shape),
                "formula": self.step.formula,
                "values": json_numbers(self.step.values),
            },
            "sampling": None
            if self.sampling is None
            else self.sampling.to_dict() | {"chosen_token": self.sampled_token},
        }

    def settings(self) -> dict[str, object]:
        """Every setting this inspection was made with, by ``inspect_prompt``'s argument names
        (the sampling settings' own names when it sampled); None: not used."""
        sampling = None if self.sampling is None else self.sampling.settings
        return {
            "prompt": self.prompt,
            "layer": self.layer,
            "head": self.head,
            "step": None if self.step is None else self.step.name,
            "top": self.top,
            "target": self.target,
            "sampling": sampling is not None,
            **({} if sampling is None else asdict(sampling)),
        }

    def _repr_html_(self) -> str:
        from .viz.html import inspection_html

        return inspection_html(self, standalone=False)


def json_numbers(values: Tensor) -> list:
    """Nested lists for strict JSON: -inf (masked attention scores) and NaN become null."""
    array = values.cpu().numpy()
    out = array.astype(object)
    out[~np.isfinite(array)] = None
    return out.tolist()


def inspect_prompt(
    model: GPT2,
    prompt: str,
    *,
    layer: int = 0,
    head: int = 0,
    step: str | None = None,
    top: int = 5,
    target: str | None = None,
    sampling: SamplingSettings | None = None,
    all_heads: bool = False,
    model_name: str | None = None,
) -> Inspection:
    """Run ``model`` once on ``prompt``, keeping only the steps shown: the residual stream for
    the logit lens, the attention pattern of block ``layer`` (of every block with
    ``all_heads``), and ``step`` if given. ``model_name``: how the model was loaded ("tiny", a
    folder), for reports to name it."""
    import torch

    from .generate import explain_sampling
    from .lens import lens_points, logit_lens
    from .prompts import tokenizer_of

    config = model.config
    check_index("layer", layer, config.n_layer)
    check_index("head", head, config.n_head)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= config.vocab_size:
        raise UsageError(f"top must be an integer in [1, {config.vocab_size}], got {top!r}")
    pattern = f"blocks.{layer}.attn.hook_pattern"
    all_patterns = ["blocks.*.attn.hook_pattern"] if all_heads else []
    names = [*lens_points(config.n_layer, "post"), pattern]
    trace = model.run_with_cache(prompt, [*names, *all_patterns, *([step] if step else [])])
    last = trace.logits[0, -1]
    probs, ids = torch.topk(torch.softmax(last.float(), dim=-1), top)
    shown = explained = None
    if step is not None:
        values = trace[step]  # a pattern such as blocks.*.hook_z is refused here
        per_head = head if values.dim() == 4 else None
        frame = trace.to_frame(step, head=per_head)
        shown = StepValues(step, describe(step).formula, values, frame, per_head)
    if sampling is not None:
        explained = explain_sampling(last, sampling, top=top, tokenizer=model.tokenizer)
    return Inspection(
        tokens=trace.tokens(),
        ids=trace.ids[0].tolist(),
        next_ids=ids.tolist(),
        next_tokens=[tokenizer_of(model).decode([i]) for i in ids.tolist()],
        next_probs=probs.tolist(),
        lens=logit_lens(model, trace, k=top, target=target, points="post"),
        layer=layer,
        head=head,
        attention=trace.to_frame(pattern, head=head),
        step=shown,
        sampling=explained,
        sampled_token=None if explained is None else tokenizer_of(model).decode([explained.chosen]),
        model=ModelFacts.of(model, model_name),
        prompt=prompt,
        top=top,
        target=target,
        patterns=trace if all_heads else None,
    )


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
