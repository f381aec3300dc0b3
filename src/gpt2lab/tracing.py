"""Run a forward pass and keep, or stop at, its named steps: ``Trace`` and the runners.

    trace = run_with_cache(model, "Mike is quick. He moves")      # every named step (or some)
    paused = run_to(model, "Mike is quick. He moves", "blocks.3.attn.hook_pattern")
    logits = paused.resume()                                     # on from the (changed) value

The runners take edits (gpt2lab.hooks.Edits) and run them through the same model code as a
plain forward pass. Import all of this from gpt2lab.trace, which adds the interventions.
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
import torch
from torch import Tensor

from .errors import UsageError, check_index
from .hooks import (
    DERIVED,
    Edits,
    HookFn,
    HookPoint,
    Hooks,
    NameFilter,
    as_hooks,
    describe,
    get_act_name,
    head_axis,
    layer_of,
    resolve_names,
    short_name,
    step_axes,
    step_names,
)
from .kv_cache import causal_mask
from .model import inference
from .prompts import PromptLike, prompt_batch

if TYPE_CHECKING:
    import pandas as pd

    from .config import GPT2Config
    from .model import GPT2
    from .tokenizer import Tokenizer

_EXCEL_MAX_COLUMNS = 16_384
_UNPACK_SEQUENCE = dis.opmap["UNPACK_SEQUENCE"]


# --- the trace --------------------------------------------------------------------------------
class Trace(Mapping[str, Tensor]):
    """The values of named steps from one forward pass: ``trace[name]`` -> tensor.

    ``ids`` [B, T] are the tokens that went in and ``logits`` [B, T, V] what came out.
    ``hook_probs`` (softmax of the logits) is computed when first asked for. Values kept on disk
    (``run_with_cache(..., to_disk=folder)``) are read from memory-mapped files when asked for.

    As TransformerLens's cache, a trace takes short keys (``trace["pattern", 0]``, see
    ``get_act_name``; a negative layer counts from the last) and unpacks into the pair its
    ``run_with_cache`` returns: ``logits, trace = model.run_with_cache(prompt)``.
    """

    def __init__(
        self,
        ids: Tensor,
        logits: Tensor,
        values: dict[str, Tensor | Path | None],
        config: GPT2Config,
        tokenizer: Tokenizer | None,
    ) -> None:
        self.ids = ids
        self.logits = logits
        self.config = config
        self.tokenizer = tokenizer
        self._values = values

    def __getitem__(self, name: str | tuple) -> Tensor:  # type: ignore[override]
        if isinstance(name, tuple):
            name = self._full_name(*name)
        if name not in self._values:
            if name in step_names(self.config):
                raise UsageError(f"{name} was not kept in this trace; ask for it with names=")
            resolve_names(name, self.config)  # raises with suggestions for a misspelt name
            raise UsageError(f"{name} is a pattern; index a trace with one full step name")
        value = self._values[name]
        if isinstance(value, Path):
            return torch.from_numpy(np.load(value, mmap_mode="c"))
        if value is None:  # hook_probs, computed on first use
            value = self._values[name] = self.probs
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def _full_name(self, name: str, layer: int | None = None, layer_type: str | None = None) -> str:
        """trace["pattern", 0] -> blocks.0.attn.hook_pattern; layer -1 is the last block."""
        if layer is not None:
            n_layer = self.config.n_layer
            if isinstance(layer, int) and -n_layer <= layer < 0:
                layer += n_layer
            check_index("layer", layer, n_layer)
        return get_act_name(name, layer, layer_type)

    def __iter__(self) -> Iterator:
        """The step names; but ``logits, trace = ...`` (an unpacking into two) gets those two,
        TransformerLens's pair. Python asks an object for its items the same way in both cases,
        so the caller's instruction tells them apart."""
        caller = sys._getframe(1)
        code, at = caller.f_code.co_code, caller.f_lasti
        if code[at] == _UNPACK_SEQUENCE and code[at + 1] == 2:
            return iter((self.logits, self))
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Trace({len(self)} steps, ids {list(self.ids.shape)})"

    def _repr_html_(self) -> str:
        from .viz.html import trace_html

        return trace_html(self)

    @property
    def nbytes(self) -> int:
        """Memory held by the values kept in RAM (not those on disk, nor unread hook_probs)."""
        return sum(v.numel() * v.element_size() for v in self._values.values() if _in_ram(v))

    @property
    def probs(self) -> Tensor:
        """softmax(logits) [B, T, V]: the model's next-token distribution at every position."""
        return torch.softmax(self.logits.float(), dim=-1)

    def tokens(self, batch: int = 0) -> list[str]:
        """The text of each token of row ``batch`` (or its id, if the model has no tokenizer)."""
        check_index("batch", batch, self.ids.shape[0])
        ids = self.ids[batch].tolist()
        if self.tokenizer is None:
            return [str(i) for i in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    def to_frame(self, name: str, *, batch: int = 0, head: int | None = None) -> pd.DataFrame:
        """One step of one prompt as a pandas table: a row per position (per head and position
        for per-head steps, unless ``head`` picks one), a column per channel, key or token."""
        import pandas as pd

        check_index("batch", batch, self.ids.shape[0])
        value = self[name][batch].float().cpu()
        positions = [f"{t} {tok!r}" for t, tok in enumerate(self.tokens(batch))]
        axis = head_axis(name, self.config)
        if axis is not None:  # per-head step: a table per head (axis - 1 without the batch)
            n_head = value.shape[axis - 1]
            if head is not None:
                check_index("head", head, n_head)
                return self._frame_2d(value.select(axis - 1, head), positions, name)
            frames = [
                self._frame_2d(value.select(axis - 1, h), positions, name) for h in range(n_head)
            ]
            return pd.concat(frames, keys=[f"head {h}" for h in range(n_head)])
        if head is not None:
            raise UsageError(f"{name} is not split into heads; leave out head=")
        return self._frame_2d(value, positions, name)

    def _frame_2d(self, value: Tensor, positions: list[str], name: str) -> pd.DataFrame:
        import pandas as pd

        n_cols = value.shape[-1]
        last_axis = step_axes(name, self.config)[-1]
        columns: list[str] | list[int]
        if last_axis == "1":  # a layer norm's mean, var or scale
            columns = [name.rsplit("_", 1)[-1]]
        elif last_axis == "S":  # keys
            columns = positions
        elif last_axis == "V" and self.tokenizer is not None:
            columns = [self.tokenizer.id_to_token(i) for i in range(n_cols)]
        else:
            columns = list(range(n_cols))
        return pd.DataFrame(value.numpy(), index=positions, columns=columns)

    def save_xlsx(
        self, path: str | Path, names: str | Iterable[str] | None = None, *, batch: int = 0
    ) -> Path:
        """Write an Excel workbook: a "steps" sheet (name, shape, formula) and a sheet per step.

        Tables wider than Excel's 16,384 columns (logits, probabilities) are written transposed,
        one row per vocabulary entry. For long prompts on big models, choose ``names``.
        """
        import pandas as pd

        path = Path(path)
        chosen = [n for n in resolve_names(names or "*", self.config) if n in self._values]
        index = []
        with pd.ExcelWriter(path, engine="xlsxwriter") as writer:
            for name in chosen:
                frame = self.to_frame(name, batch=batch)
                transposed = frame.shape[1] + 2 > _EXCEL_MAX_COLUMNS
                sheet = _sheet_name(name)
                (frame.T if transposed else frame).to_excel(writer, sheet_name=sheet)
                step = describe(name, self.config)
                shape = list(self[name].shape)
                index.append((sheet, name, str(shape), step.formula, transposed))
            pd.DataFrame(
                index, columns=["sheet", "step", "shape", "formula", "transposed"]
            ).to_excel(writer, sheet_name="steps", index=False)
        return path


def _in_ram(value: Tensor | Path | None) -> TypeGuard[Tensor]:
    return isinstance(value, Tensor)


def _sheet_name(name: str) -> str:
    """Excel allows 31 characters: blocks.11.attn.hook_unmasked_scores ->
    b11.attn.unmasked_scores"""
    return short_name(name)[:31]


# --- running --------------------------------------------------------------------------------
class _Keep:
    """A hook function that keeps each value it sees, in memory or as .npy files in a folder."""

    def __init__(self, folder: Path | None) -> None:
        self.values: dict[str, Tensor | Path | None] = {}
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, value: Tensor, hook: HookPoint) -> None:
        name = hook.name
        if self.folder is None:
            self.values[name] = value.detach()
        else:
            file = self.folder / f"{name}.npy"
            np.save(file, value.detach().float().cpu().numpy())
            self.values[name] = file


def _start_from(model: GPT2, name: str, kept: Mapping[str, Tensor]) -> tuple[int | None, Tensor]:
    """Where a rerun that changes step ``name`` can start: (layer, that layer's input) or
    (None, -) for a full run (embedding steps)."""
    layer = layer_of(name)
    if layer is not None:
        return layer, kept[f"blocks.{layer}.hook_resid_pre"]
    if name.startswith(("ln_final", "hook_logits")):
        last = model.config.n_layer - 1
        return model.config.n_layer, kept[f"blocks.{last}.hook_resid_post"]
    return None, torch.empty(0)


def run_from_block(
    model: GPT2, ids: Tensor, hooks: Hooks | None, start: int | None = None, x: Tensor | None = None
) -> Tensor:
    """Logits [B, T, V]; from block ``start`` with its input ``x`` if given, else from the ids.

    A rerun that changes a step of block L needs none of the blocks before it: starting from
    block L's cached input gives the same logits for less work (run_to, activation patching).
    """
    if start is None:
        return model(ids, hooks=hooks)
    assert x is not None, "run_from_block: x (block start's input) is needed with start"
    B, T = ids.shape
    allowed = causal_mask(T, 0, None, ids.device)
    rope = model.rope_angles(torch.arange(T, device=ids.device).expand(B, T))
    return model.unembed(model.run_blocks(x, allowed, None, hooks, start, rope), hooks)


def run_with_hooks(
    model: GPT2,
    prompt: PromptLike,
    edits: Edits = None,
    *,
    fwd_hooks: Iterable[tuple[str | NameFilter, HookFn]] = (),
) -> Tensor:
    """Logits [B, T, V] of a forward pass with the edits applied (no gradients, eval mode).

    ``fwd_hooks``: TransformerLens's form of the same, (name or filter, fn) pairs with
    ``fn(value, hook)``; they run after ``edits``.
    """
    hooks = as_hooks(edits)
    for name, fn in fwd_hooks:
        hooks.add(name, fn)
    hooks.check(model.config)
    with inference(model):
        return model(prompt_batch(model, prompt), hooks=hooks)


def run_with_cache(
    model: GPT2,
    prompt: PromptLike,
    names: str | Iterable[str] | None = None,
    *,
    edits: Edits = None,
    to_disk: str | Path | None = None,
) -> Trace:
    """Run the model and keep the value of every step in ``names`` (default: all).

    ``names``: full names or glob patterns, e.g. ``"blocks.*.attn.hook_pattern"``; keeping fewer
    steps keeps less memory. ``edits`` change values as they pass (the trace holds the changed
    ones). ``to_disk``: a folder; each value is written there as a .npy file as soon as it is
    computed and read back memory-mapped, so a long prompt on a big model fits in little RAM.
    """
    wanted = resolve_names("*" if names is None else names, model.config)
    keep = _Keep(None if to_disk is None else Path(to_disk))
    hooks = as_hooks(edits)
    hooks.check(model.config)
    for name in wanted:
        if name not in DERIVED:
            hooks.add(name, keep)
    ids = prompt_batch(model, prompt)
    with inference(model):
        logits = model(ids, hooks=hooks)
    values = keep.values
    if "hook_probs" in wanted:
        values["hook_probs"] = None  # computed on first use
    return Trace(ids, logits, values, model.config, model.tokenizer)


class _StopAt(Exception):
    pass


@dataclass
class Paused:
    """A forward pass stopped at step ``name``. Change ``value`` (in place, or pass a new one to
    ``resume``) and ``resume()`` runs on from that step to the logits, reusing what was computed
    before it. ``trace`` holds the steps kept on the way."""

    model: GPT2
    ids: Tensor
    name: str
    value: Tensor
    trace: Trace
    edits: Edits = None

    def resume(self, value: Tensor | Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Logits [B, T, V] when step ``name`` holds ``value`` (a tensor, or a function of the
        paused value; default: ``self.value`` as it is now)."""
        if callable(value):
            value = value(self.value.clone())
        new = self.value if value is None else value
        if new.shape != self.value.shape:
            raise UsageError(
                f"{self.name} has shape {list(self.value.shape)}; got {list(new.shape)}"
            )
        hooks = as_hooks(self.edits).add(self.name, lambda _v, _n: new)
        in_ram = {n: v for n, v in self.trace._values.items() if _in_ram(v)}
        start, x = _start_from(self.model, self.name, in_ram)
        with inference(self.model):
            return run_from_block(self.model, self.ids, hooks, start, x)


def run_to(
    model: GPT2,
    prompt: PromptLike,
    name: str,
    names: str | Iterable[str] | None = (),
    *,
    edits: Edits = None,
) -> Paused:
    """Run up to step ``name`` and stop there, returning its value to look at or change.

    ``names`` are steps before it to keep as well (default none; ``None``: all of them).
    """
    if name in DERIVED:
        raise UsageError(f"{name} is computed after the forward pass; stop at hook_logits")
    if any(c in name for c in "*?["):
        raise UsageError(f"run_to stops at one step; {name!r} is a pattern")
    target = resolve_names(name, model.config)[0]
    order = step_names(model.config)
    before = order[: order.index(target) + 1]
    wanted = set(
        resolve_names("*" if names is None else names, model.config) if names != () else []
    )
    layer = layer_of(target)
    if layer is not None:
        wanted.add(f"blocks.{layer}.hook_resid_pre")
    elif target.startswith(("ln_final", "hook_logits")):
        wanted.add(f"blocks.{model.config.n_layer - 1}.hook_resid_post")
    keep = _Keep(None)
    hooks = as_hooks(edits)
    hooks.check(model.config)
    for n in before:
        if n in wanted:
            hooks.add(n, keep)

    def stop(value: Tensor, _name: str) -> None:
        raise _StopAt(value)

    hooks.add(target, stop)
    ids = prompt_batch(model, prompt)
    try:
        with inference(model):
            model(ids, hooks=hooks)
    except _StopAt as stopped:
        value = stopped.args[0].clone()
    else:  # pragma: no cover - every resolved step is reached by forward()
        raise AssertionError(f"the forward pass never reached {target}")
    trace = Trace(ids, torch.empty(0), keep.values, model.config, model.tokenizer)
    return Paused(model, ids, target, value, trace, edits)
