"""What `gpt2lab inspect` and `gpt2lab steps` show, as data: the table of named steps and one
inspection of a prompt.

``step_table`` and ``inspect_prompt`` gather library results (the STEPS table, one traced forward
pass, the logit lens, the sampling lab) into plain objects. gpt2lab.viz draws them: as rich
tables in a terminal (``viz.terminal``), HTML (``viz.html``), matplotlib figures (``viz.plots``)
and JSON for the web page and ``--json`` (``viz.web_json``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .errors import UsageError, check_index
from .hooks import Step, describe, head_axis, head_index, steps

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor

    from .config import GPT2Config
    from .generate import SamplingExplanation, SamplingSettings
    from .lens import LogitLens
    from .model import GPT2
    from .trace import Trace


# --- gpt2lab steps ----------------------------------------------------------------------------
def _sized(shape: str, config: GPT2Config) -> str:
    """The model's sizes in a symbolic shape: [B, T, H, D] -> [B, T, 12, 64]. B, T and S stay:
    they depend on the input."""
    sizes = {
        "C": config.n_embd,
        "4C": 4 * config.n_embd,
        "F": config.d_mlp,
        "H": config.n_head,
        "K": config.n_key_value_heads,
        "D": config.head_dim,
        "V": config.vocab_size,
    }
    return "[" + ", ".join(str(sizes.get(d, d)) for d in shape.strip("[]").split(", ")) + "]"


def step_table(config: GPT2Config | None = None, layer: int | None = None) -> list[Step]:
    """Every named step of the config's model (default GPT-2) in forward order: names with
    ``{L}`` (or block ``layer``'s full names), shapes with the model's sizes (C, 4C, F, H, K, D,
    V) filled in when ``config`` is given."""
    if layer is not None:
        check_index("layer", layer, math.inf if config is None else config.n_layer)
    return [
        Step(
            step.name if layer is None else step.name.replace("{L}", str(layer)),
            step.shape if config is None else _sized(step.shape, config),
            step.formula,
            step.title,
        )
        for step in steps(config)
    ]


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
        """The inspection as JSON-ready lists and numbers (``gpt2lab inspect --json``)."""
        from .viz.web_json import inspection_json

        return inspection_json(self)

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
        per_head = head_index(step, head, config) if head_axis(step, config) is not None else None
        frame = trace.to_frame(step, head=per_head)
        shown = StepValues(step, describe(step, config).formula, values, frame, per_head)
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
