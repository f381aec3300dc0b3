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
``steps(config)`` is the same list for any config (gpt2lab.config's switches): RMSNorm's
``hook_scale``/``hook_normalized``/``hook_out``, RoPE's ``attn.hook_rot_q``/``hook_rot_k``,
k and v [B, T, K, D] with grouped-query attention, SwiGLU's ``mlp.hook_pre_linear``.
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

from torch import Tensor

from .config import PRESETS, GPT2Config
from .errors import UsageError

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


def _rms_norm_steps(prefix: str, of: str, title: str) -> list[Step]:
    x = of if " " not in of else f"({of})"
    return [
        Step(
            f"{prefix}.hook_scale",
            "[B, T, 1]",
            f"rms = sqrt(mean({x}²) + ε)  (RMSNorm: no mean taken out)",
            f"{title}: scale",
        ),
        Step(f"{prefix}.hook_normalized", "[B, T, C]", f"x̂ = {x} / rms", f"{title}: normalized"),
        Step(f"{prefix}.hook_out", "[B, T, C]", "x̂ · g  (learned gain, no bias)", f"{title}: gain"),
    ]


_ACTIVATION_STEPS = {  # hook_post of a one-input MLP: formula, title
    "gelu_tanh": ("gelu(pre)", "MLP: GELU"),
    "gelu": ("gelu(pre) = pre · Φ(pre), exact (erf)", "MLP: GELU (exact)"),
    "relu": ("relu(pre) = max(pre, 0)", "MLP: ReLU"),
}


def steps(config: GPT2Config | None = None) -> tuple[Step, ...]:
    """The named steps of a config's forward pass, in order (``{L}`` for the layer), with
    shapes and formulas that follow its switches: RMSNorm's three steps instead of LayerNorm's
    five, ``attn.hook_rot_q``/``hook_rot_k`` with RoPE, k and v [B, T, K, D] with grouped-query
    attention, ``mlp.hook_pre_linear`` with SwiGLU, the norms after the sums when post-norm, no
    ``hook_pos_embed`` with RoPE and no ``ln_final`` without a final norm. None: GPT-2 (STEPS).
    """
    c = config or GPT2Config()
    pre = c.norm_position == "pre"
    rope = c.positions == "rope"
    norm_steps = _layer_norm_steps if c.norm == "layernorm" else _rms_norm_steps
    norm_name = "Layer norm" if c.norm == "layernorm" else "RMSNorm"
    kv = "H" if c.n_key_value_heads == c.n_head else "K"
    attn_in = "ln1(x)" if pre else "x"
    qkv_b = {n: f" + b_{n}" if c.qkv_bias else "" for n in "QKV"}
    o_b = " + b_O" if c.attn_out_bias else ""
    mlp_b = {n: f" + b_{n}" if c.mlp_bias else "" for n in ("in", "gate", "out")}
    heads = "split into heads" if kv == "H" else "split into K key/value heads"
    q_name, k_name = ("rot_q", "rot_k") if rope else ("q", "k")
    if kv == "K":
        k_name = f"repeat_kv({k_name})"
    v_name = "v" if kv == "H" else "repeat_kv(v)"
    mlp_width = "4C" if c.d_mlp == 4 * c.n_embd else "F"
    mlp_in = "ln2(resid_mid)" if pre else "resid_mid"

    out: list[Step] = [
        Step("hook_embed", "[B, T, C]", "W_E[ids]: token embedding", "Token embeddings W_E[ids]")
    ]
    if c.positions == "learned":
        out.append(
            Step(
                "hook_pos_embed",
                "[B, T, C]",
                "W_P[positions]: learned position embedding",
                "Position embeddings W_P[positions]",
            )
        )
    elif c.positions == "sinusoidal":
        out.append(
            Step(
                "hook_pos_embed",
                "[B, T, C]",
                "PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(…): fixed sinusoids",
                "Position embeddings (sinusoids)",
            )
        )
    out.append(
        Step(
            "blocks.{L}.hook_resid_pre",
            "[B, T, C]",
            "embed, or the previous block's out"
            if rope
            else "embed + pos_embed, or the previous block's out",
            "Residual stream entering the block",
        )
    )
    ln1 = norm_steps("blocks.{L}.ln1", "x" if pre else "x + attn_out", f"{norm_name} 1")
    ln2 = norm_steps(
        "blocks.{L}.ln2", "resid_mid" if pre else "resid_mid + mlp_out", f"{norm_name} 2"
    )
    if pre:
        out += ln1
    out += [
        Step(
            "blocks.{L}.attn.hook_q",
            "[B, T, H, D]",
            f"q = {attn_in} @ W_Q{qkv_b['Q']}, split into heads",
            "Queries",
        ),
        Step(
            "blocks.{L}.attn.hook_k",
            f"[B, T, {kv}, D]",
            f"k = {attn_in} @ W_K{qkv_b['K']}, {heads}",
            "Keys",
        ),
        Step(
            "blocks.{L}.attn.hook_v",
            f"[B, T, {kv}, D]",
            f"v = {attn_in} @ W_V{qkv_b['V']}, {heads}",
            "Values",
        ),
    ]
    if rope:
        turn = "RoPE turns each pair of dims by position · θ_i"
        out += [
            Step(
                "blocks.{L}.attn.hook_rot_q",
                "[B, T, H, D]",
                f"q·cos + rotate_half(q)·sin: {turn}",
                "Queries rotated (RoPE)",
            ),
            Step(
                "blocks.{L}.attn.hook_rot_k",
                f"[B, T, {kv}, D]",
                f"k·cos + rotate_half(k)·sin: {turn}",
                "Keys rotated (RoPE)",
            ),
        ]
    out += [
        Step(
            "blocks.{L}.attn.hook_unmasked_scores",
            "[B, H, T, S]",
            f"{q_name} @ {k_name}ᵀ / sqrt(D), before the mask",
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
        Step(
            "blocks.{L}.attn.hook_z", "[B, T, H, D]", f"z = pattern @ {v_name}", "Weighted values z"
        ),
        Step(
            "blocks.{L}.hook_attn_out",
            "[B, T, C]",
            f"concat heads(z) @ W_O{o_b}",
            "Attention output",
        ),
    ]
    if not pre:
        out += ln1
    out.append(
        Step(
            "blocks.{L}.hook_resid_mid",
            "[B, T, C]",
            "x + attn_out" if pre else "ln1(x + attn_out): normalized after the sum (post-norm)",
            "Residual stream after attention",
        )
    )
    if pre:
        out += ln2
    if c.activation == "swiglu":
        out += [
            Step(
                "blocks.{L}.mlp.hook_pre",
                f"[B, T, {mlp_width}]",
                f"{mlp_in} @ W_gate{mlp_b['gate']}",
                "MLP: gate",
            ),
            Step(
                "blocks.{L}.mlp.hook_pre_linear",
                f"[B, T, {mlp_width}]",
                f"{mlp_in} @ W_in{mlp_b['in']}",
                "MLP: first linear layer",
            ),
            Step(
                "blocks.{L}.mlp.hook_post",
                f"[B, T, {mlp_width}]",
                "silu(pre) · pre_linear  (SwiGLU; silu(x) = x·σ(x))",
                "MLP: SwiGLU",
            ),
        ]
    else:
        formula, title = _ACTIVATION_STEPS[c.activation]
        out += [
            Step(
                "blocks.{L}.mlp.hook_pre",
                f"[B, T, {mlp_width}]",
                f"{mlp_in} @ W_in{mlp_b['in']}",
                "MLP: first linear layer",
            ),
            Step("blocks.{L}.mlp.hook_post", f"[B, T, {mlp_width}]", formula, title),
        ]
    out.append(
        Step("blocks.{L}.hook_mlp_out", "[B, T, C]", f"post @ W_out{mlp_b['out']}", "MLP output")
    )
    if not pre:
        out += ln2
    out.append(
        Step(
            "blocks.{L}.hook_resid_post",
            "[B, T, C]",
            "resid_mid + mlp_out" if pre else "ln2(resid_mid + mlp_out)",
            "Residual stream leaving the block",
        )
    )
    if c.final_norm:
        final_title = "Final layer norm" if c.norm == "layernorm" else "Final RMSNorm"
        out += norm_steps("ln_final", "resid_post of the last block", final_title)
    read = "ln_final(x)" if c.final_norm else "x"
    output = (
        "W_Eᵀ  (the tied unembedding W_U)"
        if c.tie_word_embeddings
        else "W_U  (lm_head, a matrix of its own)"
    )
    if not c.final_norm:
        output += ", x the last block's resid_post (no final norm)"
    out.append(Step("hook_logits", "[B, T, V]", f"{read} @ {output}", "Logits"))
    out.append(
        Step(
            "hook_probs",
            "[B, T, V]",
            "softmax(logits): the next-token distribution (trace only)",
            "Probabilities",
        )
    )
    return tuple(out)


# B batch, T positions, S positions attended to, C n_embd, H heads, K key/value heads, D head
# size, F the MLP's hidden size (4C in GPT-2), V vocabulary.
STEPS: tuple[Step, ...] = steps()  # GPT-2's
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
)  # every other step of STEPS has TransformerLens's name, shape and meaning (of steps(config),
# the RMSNorms' hook_out is gpt2lab's too)
RENAMED = {
    "hook_masked_scores": "hook_attn_scores (the scores after the mask, as in TransformerLens)",
}  # names of earlier versions, for the error that meets them


def step_names(config: GPT2Config) -> list[str]:
    """Every step name of a model, in the order the forward pass computes them."""
    catalogue = steps(config)
    block = [s.name for s in catalogue if s.name.startswith("blocks.")]
    names = [s.name for s in catalogue if s.name in ("hook_embed", "hook_pos_embed")]
    for layer in range(config.n_layer):
        names += [n.replace("{L}", str(layer)) for n in block]
    names += [
        s.name for s in catalogue if not s.name.startswith(("blocks.", "hook_embed", "hook_pos"))
    ]
    return names


def describe(name: str, config: GPT2Config | None = None) -> Step:
    """The ``Step`` (shape, formula) of a full name such as ``blocks.3.attn.hook_pattern``, as
    the model of ``config`` computes it (default GPT-2's; a step GPT-2 lacks, such as
    ``attn.hook_rot_q``, is then described as the first config that has it does)."""
    parts = name.split(".")
    template = ".".join(
        ["{L}" if i == 1 and parts[0] == "blocks" else p for i, p in enumerate(parts)]
    )
    for step in steps(config) if config is not None else _ALL_STEPS:
        if step.name == template:
            return step
    raise UsageError(f"unknown step {name!r}; `gpt2lab steps` lists them")


def step_axes(name: str, config: GPT2Config | None = None) -> list[str]:
    """A step's symbolic axes: blocks.0.attn.hook_z -> ["B", "T", "H", "D"] (see ``describe``)"""
    return describe(name, config).shape.strip("[]").split(", ")


def head_index(name: str, head: int, config: GPT2Config) -> int:
    """The index on step ``name``'s head axis that query head ``head`` reads: the head itself,
    or, for the keys and values of grouped-query attention ([B, T, K, D]), the key/value head
    it shares, head // (H / K)."""
    if "K" in step_axes(name, config):
        return head // (config.n_head // config.n_key_value_heads)
    return head


def head_axis(name: str, config: GPT2Config | None = None) -> int | None:
    """Where a step's head axis is (counting the batch axis), or None if it has none:
    hook_z [B, T, H, D] -> 2, hook_pattern [B, H, T, S] -> 1, hook_resid_pre -> None; the
    key/value heads of grouped-query attention (hook_k [B, T, K, D]) -> 2."""
    axes = step_axes(name, config)
    return next((i for i, axis in enumerate(axes) if axis in ("H", "K")), None)


_ACT_ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "query": "q",
    "key": "k",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
}  # TransformerLens's


def _all_steps() -> tuple[Step, ...]:
    """GPT-2's steps, then those only other switches have (RoPE's rotations, SwiGLU's
    pre_linear), for ``describe`` without a config."""
    found = {s.name: s for s in STEPS}
    for config in PRESETS.values():
        found |= {s.name: s for s in steps(config) if s.name not in found}
    return tuple(found.values())


_ALL_STEPS = _all_steps()


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
    if name in ("q", "k", "v", "z", "pattern", "attn_scores", "unmasked_scores", "rot_q", "rot_k"):
        layer_type = "attn"
    elif name in ("pre", "post", "pre_linear"):
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
