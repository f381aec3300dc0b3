"""Edits that change a forward pass, and the experiments built from them.

An *edit* is a pair (step name, function) that replaces the value at that step (see
gpt2lab.hooks); pass edits to any runner (``run_with_cache``, ``run_with_hooks``, ``run_to``,
``generate``). These helpers build the usual ones: ``ablate_head``, ``ablate_mlp``,
``scale_neuron``, ``add_vector`` (steering, with ``steering_vector`` to find a direction),
``set_to`` and ``patch`` (activation patching, also as a whole grid with
``activation_patching``). Import them from gpt2lab.trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from .errors import UsageError, check_index
from .hooks import Edit, as_hooks, step_axes
from .model import inference
from .prompts import PromptLike
from .tracing import Trace, run_from_block, run_with_cache

if TYPE_CHECKING:
    import pandas as pd

    from .model import GPT2


def set_to(name: str, value: Tensor) -> Edit:
    """Replace the value at step ``name`` with ``value`` (same shape)."""

    def fn(old: Tensor, _name: str) -> Tensor:
        if old.shape != value.shape:
            raise UsageError(f"{name} has shape {list(old.shape)}; got {list(value.shape)}")
        return value.to(old.dtype)

    return name, fn


def _ablate(value: Tensor, how: Literal["zero", "mean"], dim_positions: int) -> Tensor:
    if how == "zero":
        return torch.zeros_like(value)
    if how == "mean":
        return value.mean(dim=dim_positions, keepdim=True).expand_as(value)
    raise UsageError(f"how must be 'zero' or 'mean', got {how!r}")


def ablate_head(layer: int, head: int, how: Literal["zero", "mean"] = "zero") -> Edit:
    """Silence one attention head: its z (the weighted values) becomes 0, or its mean over the
    prompt's positions (``how="mean"``), before W_O mixes the heads."""
    name = f"blocks.{layer}.attn.hook_z"
    axes = step_axes(name)  # [B, T, H, D]
    h = axes.index("H")
    t = [a for a in axes if a != "H"].index("T")  # the positions of one head's z

    def fn(z: Tensor, _name: str) -> Tensor:
        check_index("head", head, z.shape[h])
        z = z.clone()
        one = z.select(h, head)
        one.copy_(_ablate(one, how, dim_positions=t))
        return z

    return name, fn


def ablate_mlp(layer: int, how: Literal["zero", "mean"] = "zero") -> Edit:
    """Remove an MLP's contribution to the residual stream (0, or its mean over positions)."""

    def fn(out: Tensor, _name: str) -> Tensor:  # [B, T, C]
        return _ablate(out, how, dim_positions=1)

    return f"blocks.{layer}.hook_mlp_out", fn


def scale_neuron(layer: int, neuron: int, factor: float) -> Edit:
    """Multiply one MLP neuron's activation (after GELU) by ``factor`` (0 switches it off)."""

    def fn(post: Tensor, _name: str) -> Tensor:  # [B, T, 4C]
        check_index("neuron", neuron, post.shape[-1])
        post = post.clone()
        post[..., neuron] *= factor
        return post

    return f"blocks.{layer}.mlp.hook_post", fn


def add_vector(
    layer: int,
    vector: Tensor,
    *,
    scale: float = 1.0,
    positions: Sequence[int] | None = None,
    step: str = "hook_resid_pre",
) -> Edit:
    """Steering: add ``scale · vector`` [C] to the residual stream entering block ``layer``
    (at ``positions``, default all)."""

    def fn(x: Tensor, _name: str) -> Tensor:  # [B, T, C]
        if vector.shape != x.shape[-1:]:
            raise UsageError(
                f"the vector must have shape [{x.shape[-1]}], got {list(vector.shape)}"
            )
        x = x.clone()
        where = slice(None) if positions is None else list(positions)
        x[:, where] += scale * vector.to(x.dtype)
        return x

    return f"blocks.{layer}.{step}", fn


def steering_vector(model: GPT2, positive: str, negative: str, layer: int) -> Tensor:
    """resid_pre of block ``layer`` at the last token of ``positive`` minus that of ``negative``
    [C]: a direction to add with ``add_vector`` (activation addition, Turner et al. 2023)."""
    name = f"blocks.{layer}.hook_resid_pre"
    plus = run_with_cache(model, positive, name)[name][0, -1]
    minus = run_with_cache(model, negative, name)[name][0, -1]
    return plus - minus


def patch(name: str, source: Trace | Tensor, positions: Sequence[int] | None = None) -> Edit:
    """Activation patching: put the value of step ``name`` from another run (``source``, a trace
    of the same length) in place of this run's, at ``positions`` (default all)."""
    src = source[name] if isinstance(source, Trace) else source

    def fn(value: Tensor, _name: str) -> Tensor:
        if src.shape != value.shape:
            raise UsageError(
                f"cannot patch {name}: the source has shape {list(src.shape)}, this run "
                f"{list(value.shape)} (patching needs prompts of the same token length)"
            )
        if positions is None:
            return src.to(value.dtype)
        value = value.clone()
        pos_dim = step_axes(name).index("T")
        T = value.shape[pos_dim]
        for p in positions:
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not -T <= p < T:
                raise UsageError(f"patch positions must be integers in [-{T}, {T}), got {p!r}")
        index: list[slice | list[int]] = [slice(None)] * value.dim()
        index[pos_dim] = list(positions)
        value[tuple(index)] = src[tuple(index)].to(value.dtype)
        return value

    return name, fn


@dataclass(frozen=True)
class PatchingResult:
    """``effect[L, t]``: how much of the clean run's metric comes back when step ``step`` of
    block L at position t is patched from the clean run into the corrupted one (1 = all of it,
    0 = none). ``metric`` holds the raw values."""

    step: str
    tokens: list[str]
    effect: Tensor  # [n_layer, T]
    metric: Tensor  # [n_layer, T]
    clean_metric: float
    corrupted_metric: float

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        columns = [f"{t} {tok!r}" for t, tok in enumerate(self.tokens)]
        index = [f"block {layer}" for layer in range(self.effect.shape[0])]
        return pd.DataFrame(self.effect.numpy(), index=index, columns=columns)


def logit_difference(answer: int, wrong: int | None = None) -> Callable[[Tensor], float]:
    """A metric for patching: logit[answer] - logit[wrong] at the last position (or, with no
    ``wrong``, the log-probability of ``answer``)."""

    def metric(logits: Tensor) -> float:
        last = logits[0, -1].float()
        check_index("answer", answer, last.numel())
        if wrong is not None:
            check_index("wrong", wrong, last.numel())
        if wrong is None:
            return float(torch.log_softmax(last, dim=-1)[answer])
        return float(last[answer] - last[wrong])

    return metric


def activation_patching(
    model: GPT2,
    clean: PromptLike,
    corrupted: PromptLike,
    metric: Callable[[Tensor], float],
    step: str = "hook_resid_pre",
) -> PatchingResult:
    """Patch ``blocks.L.{step}`` at one position at a time from the clean run into the corrupted
    run, for every block L and position, and measure ``metric(logits)`` each time.

    Each patched run starts at block L from the corrupted run's cached input, so the grid costs
    about n_layer / 2 forward passes per position.
    """
    names = f"blocks.*.{step}"
    clean_trace = run_with_cache(model, clean, [names, "blocks.*.hook_resid_pre"])
    bad = run_with_cache(model, corrupted, [names, "blocks.*.hook_resid_pre"])
    if clean_trace.ids.shape != bad.ids.shape:
        raise UsageError(
            "activation patching needs prompts of the same token length; got "
            f"{clean_trace.ids.shape[1]} (clean) and {bad.ids.shape[1]} (corrupted)"
        )
    n_layer, T = model.config.n_layer, bad.ids.shape[1]
    raw = torch.empty(n_layer, T)
    with inference(model):
        for layer in range(n_layer):
            name = f"blocks.{layer}.{step}"
            x = bad[f"blocks.{layer}.hook_resid_pre"]
            for t in range(T):
                hooks = as_hooks([patch(name, clean_trace, positions=[t])])
                raw[layer, t] = metric(run_from_block(model, bad.ids, hooks, layer, x))
    clean_value, bad_value = metric(clean_trace.logits), metric(bad.logits)
    span = clean_value - bad_value
    effect = (raw - bad_value) / span if span != 0 else torch.full_like(raw, float("nan"))
    return PatchingResult(step, bad.tokens(), effect, raw, clean_value, bad_value)
