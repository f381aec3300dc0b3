"""Step names, and the mechanism to read or replace the value at a step during a forward pass.

Every intermediate value of GPT-2 has a stable name, the one TransformerLens uses, with
TransformerLens's shape and meaning (tests/test_transformer_lens.py compares them):

    hook_embed, hook_pos_embed                      W_E[ids], W_P[positions]
    blocks.{L}.hook_resid_pre ... hook_resid_post   the residual stream around block L
    blocks.{L}.attn.hook_q, hook_k, hook_v, hook_z  [batch, pos, head, d_head]
    blocks.{L}.attn.hook_attn_scores                the scores after the causal mask
    blocks.{L}.attn.hook_pattern                    the attention pattern (after softmax)
    blocks.{L}.ln1.hook_scale, hook_normalized      sqrt(var + eps), and (x - mean) / scale
    ln_final.hook_normalized, ...

Names gpt2lab adds (``GPT2LAB_ONLY``) show the steps TransformerLens folds together: a layer
norm's ``hook_mean``, ``hook_var`` and ``hook_out`` (after gain and bias), the scores before the
mask (``attn.hook_unmasked_scores``), ``hook_logits`` and ``hook_probs``.

``STEPS`` lists them in the order the forward pass computes them, with a shape and a formula;
``gpt2lab steps`` prints that table, and ``head_axis`` reads a step's head axis from it.
``get_act_name`` turns TransformerLens's short names (``"pattern", 0``) into full ones.

A ``Hooks`` object maps names (or filters of names) to functions; the model calls
``hook(hooks, name, value)`` at every step, and a function may return a new value to use
instead. With no hooks (``hooks=None``, the default) the forward pass does nothing extra. An
*edit* is one (name, function) pair; ``as_hooks`` turns edits, in any form the runners take,
into Hooks.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from .errors import UsageError

if TYPE_CHECKING:
    from .config import GPT2Config

HookFn = Callable[[Tensor, "HookPoint"], "Tensor | None"]
"""Called as fn(value, hook): ``hook`` is the step's name (a str, with TransformerLens's
``hook.name``). Return None to leave the value as it is, or a tensor to replace it."""

NameFilter = Callable[[str], bool]
"""Picks steps by name, as TransformerLens's fwd_hooks take them: ``lambda name: ...``."""


class HookPoint(str):
    """The name of the step a hook function runs at: a str, so ``fn(value, name)`` reads it as
    one, with TransformerLens's ``hook.name`` and ``hook.layer()`` for ``fn(value, hook)``."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return str(self)

    def layer(self) -> int:
        """The block this step belongs to; an error outside blocks, as in TransformerLens."""
        layer = layer_of(self)
        if layer is None:
            raise UsageError(f"{self} is not inside a block")
        return layer


@dataclass(frozen=True)
class Step:
    """One named step: its name (``{L}`` stands for the layer), the shape, the formula, and a
    title in words (the heading the web page and the views give it)."""

    name: str
    shape: str
    formula: str
    title: str


def _layer_norm_steps(prefix: str, of: str, title: str) -> list[Step]:
    return [
        Step(f"{prefix}.hook_mean", "[B, T, 1]", f"μ = mean({of}) over channels", f"{title}: mean"),
        Step(
            f"{prefix}.hook_var",
            "[B, T, 1]",
            f"σ² = mean(({of} - μ)²) over channels",
            f"{title}: variance",
        ),
        Step(
            f"{prefix}.hook_scale",
            "[B, T, 1]",
            "scale = sqrt(σ² + ε)",
            f"{title}: scale",
        ),
        Step(
            f"{prefix}.hook_normalized",
            "[B, T, C]",
            f"x̂ = ({of} - μ) / scale",
            f"{title}: normalized",
        ),
        Step(
            f"{prefix}.hook_out",
            "[B, T, C]",
            "x̂ · g + b  (learned gain and bias)",
            f"{title}: gain and bias",
        ),
    ]


# B batch, T positions, S positions attended to, C n_embd, H heads, D head size, V vocabulary.
STEPS: tuple[Step, ...] = (
    Step("hook_embed", "[B, T, C]", "W_E[ids]: token embedding", "Token embeddings W_E[ids]"),
    Step(
        "hook_pos_embed",
        "[B, T, C]",
        "W_P[positions]: learned position embedding",
        "Position embeddings W_P[positions]",
    ),
    Step(
        "blocks.{L}.hook_resid_pre",
        "[B, T, C]",
        "embed + pos_embed, or the previous block's out",
        "Residual stream entering the block",
    ),
    *_layer_norm_steps("blocks.{L}.ln1", "x", "Layer norm 1"),
    Step(
        "blocks.{L}.attn.hook_q",
        "[B, T, H, D]",
        "q = ln1(x) @ W_Q + b_Q, split into heads",
        "Queries",
    ),
    Step(
        "blocks.{L}.attn.hook_k", "[B, T, H, D]", "k = ln1(x) @ W_K + b_K, split into heads", "Keys"
    ),
    Step(
        "blocks.{L}.attn.hook_v",
        "[B, T, H, D]",
        "v = ln1(x) @ W_V + b_V, split into heads",
        "Values",
    ),
    Step(
        "blocks.{L}.attn.hook_unmasked_scores",
        "[B, H, T, S]",
        "q @ kᵀ / sqrt(D), before the mask",
        "Attention scores",
    ),
    Step(
        "blocks.{L}.attn.hook_attn_scores",
        "[B, H, T, S]",
        "scores, -inf where key > query",
        "Causal mask",
    ),
    Step(
        "blocks.{L}.attn.hook_pattern",
        "[B, H, T, S]",
        "softmax(masked scores) over keys",
        "Attention pattern",
    ),
    Step("blocks.{L}.attn.hook_z", "[B, T, H, D]", "z = pattern @ v", "Weighted values z"),
    Step(
        "blocks.{L}.hook_attn_out",
        "[B, T, C]",
        "concat heads(z) @ W_O + b_O",
        "Attention output",
    ),
    Step(
        "blocks.{L}.hook_resid_mid",
        "[B, T, C]",
        "x + attn_out",
        "Residual stream after attention",
    ),
    *_layer_norm_steps("blocks.{L}.ln2", "resid_mid", "Layer norm 2"),
    Step(
        "blocks.{L}.mlp.hook_pre",
        "[B, T, 4C]",
        "ln2(resid_mid) @ W_in + b_in",
        "MLP: first linear layer",
    ),
    Step("blocks.{L}.mlp.hook_post", "[B, T, 4C]", "gelu(pre)", "MLP: GELU"),
    Step("blocks.{L}.hook_mlp_out", "[B, T, C]", "post @ W_out + b_out", "MLP output"),
    Step(
        "blocks.{L}.hook_resid_post",
        "[B, T, C]",
        "resid_mid + mlp_out",
        "Residual stream leaving the block",
    ),
    *_layer_norm_steps("ln_final", "resid_post of the last block", "Final layer norm"),
    Step(
        "hook_logits",
        "[B, T, V]",
        "ln_final(x) @ W_Eᵀ  (the tied unembedding W_U)",
        "Logits",
    ),
    Step(
        "hook_probs",
        "[B, T, V]",
        "softmax(logits): the next-token distribution (trace only)",
        "Probabilities",
    ),
)
DERIVED = frozenset({"hook_probs"})  # computed by a trace from the logits, not inside forward()
GPT2LAB_ONLY = frozenset(
    {
        "blocks.{L}.ln1.hook_mean",
        "blocks.{L}.ln1.hook_var",
        "blocks.{L}.ln1.hook_out",
        "blocks.{L}.attn.hook_unmasked_scores",
        "blocks.{L}.ln2.hook_mean",
        "blocks.{L}.ln2.hook_var",
        "blocks.{L}.ln2.hook_out",
        "ln_final.hook_mean",
        "ln_final.hook_var",
        "ln_final.hook_out",
        "hook_logits",
        "hook_probs",
    }
)  # every other step of STEPS has TransformerLens's name, shape and meaning
RENAMED = {
    "hook_masked_scores": "hook_attn_scores (the scores after the mask, as in TransformerLens)",
}  # names of earlier versions, for the error that meets them


def step_names(config: GPT2Config) -> list[str]:
    """Every step name of a model, in the order the forward pass computes them."""
    names: list[str] = []
    block = [s.name for s in STEPS if s.name.startswith("blocks.")]
    names += [s.name for s in STEPS[:2]]
    for layer in range(config.n_layer):
        names += [n.replace("{L}", str(layer)) for n in block]
    names += [s.name for s in STEPS if not s.name.startswith(("blocks.", "hook_embed", "hook_pos"))]
    return names


def describe(name: str) -> Step:
    """The ``Step`` (shape, formula) of a full name such as ``blocks.3.attn.hook_pattern``."""
    parts = name.split(".")
    template = ".".join(
        ["{L}" if i == 1 and parts[0] == "blocks" else p for i, p in enumerate(parts)]
    )
    for step in STEPS:
        if step.name == template:
            return step
    raise UsageError(f"unknown step {name!r}; `gpt2lab steps` lists them")


def step_axes(name: str) -> list[str]:
    """A step's symbolic axes from STEPS: blocks.0.attn.hook_z -> ["B", "T", "H", "D"]"""
    return describe(name).shape.strip("[]").split(", ")


def head_axis(name: str) -> int | None:
    """Where a step's head axis is (counting the batch axis), or None if it has none:
    hook_z [B, T, H, D] -> 2, hook_pattern [B, H, T, S] -> 1, hook_resid_pre -> None."""
    axes = step_axes(name)
    return axes.index("H") if "H" in axes else None


_ACT_ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "query": "q",
    "key": "k",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
}  # TransformerLens's


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """A full step name from TransformerLens's short ones (its ``utils.get_act_name``):
    ("pattern", 0) -> blocks.0.attn.hook_pattern, ("normalized", 1, "ln2") ->
    blocks.1.ln2.hook_normalized, ("scale",) -> ln_final.hook_scale, "k6" -> blocks.6.attn.hook_k.
    A full name comes back as it is."""
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.fullmatch(r"([a-z_]+?)(\d+)([a-z]\w*)?", name)
    if match is not None:
        name, layer, layer_type = match[1], int(match[2]), match[3]
    name = _ACT_ALIASES.get(name, name)
    if name in ("q", "k", "v", "z", "pattern", "attn_scores", "unmasked_scores"):
        layer_type = "attn"
    elif name in ("pre", "post"):
        layer_type = "mlp"
    elif layer_type is not None:
        layer_type = {"a": "attn", "m": "mlp", "b": "", "block": "", "attention": "attn"}.get(
            layer_type, layer_type
        )
    full = f"blocks.{layer}." if layer is not None else ""
    full += f"{layer_type}.hook_{name}" if layer_type else f"hook_{name}"
    if name in ("scale", "normalized", "mean", "var", "out") and layer is None:
        full = f"ln_final.{full}"
    return full


def short_name(name: str) -> str:
    """A narrow label for tables: blocks.3.hook_resid_post -> b3.resid_post"""
    return name.replace("blocks.", "b").replace("hook_", "")


def layer_of(name: str) -> int | None:
    """The block a step belongs to (``blocks.3.…`` -> 3), or None for steps outside blocks."""
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else None


def resolve_names(patterns: str | Iterable[str], config: GPT2Config) -> list[str]:
    """Full step names matching names or glob patterns (``blocks.*.attn.hook_pattern``), in order.

    A pattern that matches nothing is an error whose message suggests the closest names.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    all_names = step_names(config)
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise UsageError(f"step names must be strings, got {pattern!r}")
        hits = fnmatch.filter(all_names, pattern)
        if not hits:
            close = difflib.get_close_matches(pattern, all_names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            old = pattern.rsplit(".", 1)[-1]
            if old in RENAMED:
                hint = f"; it is now {RENAMED[old]}"
            raise UsageError(
                f"no step is named {pattern!r} in this {config.n_layer}-layer model{hint} "
                "(`gpt2lab steps` lists them)"
            )
        chosen.update(hits)
    return [n for n in all_names if n in chosen]


class Hooks:
    """Functions to run at named steps: ``Hooks({"blocks.0.hook_resid_pre": fn})``.

    Each function is called as fn(value, hook) when the forward pass reaches that step (``hook``
    is the step's name, see ``HookPoint``); if it returns a tensor, the model continues with that
    tensor instead. A function may also be added for a filter of names (``lambda name: ...``,
    as TransformerLens's fwd_hooks take them): it runs at every step whose name passes. At a
    step, the functions added for its name run first, then those of filters; each in the order
    they were added.
    """

    def __init__(self, fns: dict[str, HookFn | list[HookFn]] | None = None) -> None:
        self.fns: dict[str, list[HookFn]] = {}
        self.filters: list[tuple[NameFilter, HookFn]] = []
        for name, fn in (fns or {}).items():
            for f in fn if isinstance(fn, list) else [fn]:
                self.add(name, f)

    def add(self, name: str | NameFilter, fn: HookFn) -> Hooks:
        if isinstance(name, str):
            self.fns.setdefault(name, []).append(fn)
        elif callable(name):
            self.filters.append((name, fn))
        else:
            raise UsageError(f"a hook is added for a step name or a filter of names, not {name!r}")
        return self

    def __call__(self, name: str, value: Tensor) -> Tensor:
        fns = self.fns.get(name, [])
        if self.filters:
            fns = [*fns, *(fn for keep, fn in self.filters if keep(name))]
        point = HookPoint(name)
        for fn in fns:
            out = fn(value, point)
            if out is not None:
                value = out
        return value

    def check(self, config: GPT2Config) -> None:
        """Raise UsageError for a name that is not a step of this model."""
        resolve_names([n for n in self.fns if n not in DERIVED] or [], config)


def hook(hooks: Hooks | None, name: str, value: Tensor) -> Tensor:
    """The value at step ``name``, after any hook functions ran on it."""
    return value if hooks is None else hooks(name, value)


# --- edits ------------------------------------------------------------------------------------
Edit = tuple[str, HookFn]
"""An edit: (step name, function) whose result replaces the value at that step."""

Edits = Mapping[str, HookFn] | Iterable[Edit | tuple[NameFilter, HookFn]] | Hooks | None
"""Edits as the runners take them: a dict name -> fn, (name, fn) pairs (the name may be a filter
of names, as in TransformerLens's fwd_hooks), Hooks, or None."""


def as_hooks(edits: Edits) -> Hooks:
    """A fresh ``Hooks`` holding the edits (a dict name -> fn, (name, fn) pairs, or Hooks)."""
    if isinstance(edits, Hooks):
        hooks = Hooks({name: list(fns) for name, fns in edits.fns.items()})
        hooks.filters = list(edits.filters)
        return hooks
    pairs = edits.items() if isinstance(edits, Mapping) else (edits or [])
    hooks = Hooks()
    for name, fn in pairs:
        hooks.add(name, fn)
    return hooks
