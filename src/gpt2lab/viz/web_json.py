"""JSON views: what the web page and ``gpt2lab inspect --json`` read, as strict JSON (lists,
numbers, null; never NaN or Infinity, which browsers' JSON.parse refuses)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..hooks import describe, head_axis

if TYPE_CHECKING:
    from torch import Tensor

    from ..config import GPT2Config
    from ..inspection import Inspection


def json_numbers(values: Tensor) -> list:
    """Nested lists for strict JSON: -inf (masked attention scores) and NaN become null."""
    array = values.cpu().numpy()
    out = array.astype(object)
    out[~np.isfinite(array)] = None
    return out.tolist()


def step_json(name: str, shape: list[int], config: GPT2Config | None = None) -> dict:
    """A step of a run as the page lists it: its full name and shape, the symbolic axes (and
    which of them is the head's, or null), the formula, and the title its cell is headed with
    (all from hooks.steps of the model's config; GPT-2's without one)."""
    step = describe(name, config)
    return {
        "name": name,
        "shape": shape,
        "axes": step.shape,
        "head_axis": head_axis(name, config),
        "formula": step.formula,
        "title": step.title,
    }


def inspection_json(ins: Inspection) -> dict:
    """Everything an ``Inspection`` shows, for ``gpt2lab inspect --json``."""
    step = ins.step
    return {
        "tokens": ins.tokens,
        "ids": ins.ids,
        "next": {"ids": ins.next_ids, "tokens": ins.next_tokens, "probs": ins.next_probs},
        "lens": ins.lens.to_dict(),
        "attention": {
            "layer": ins.layer,
            "head": ins.head,
            "pattern": ins.attention.to_numpy().tolist(),
        },
        "step": None
        if step is None
        else {
            "name": step.name,
            "shape": list(step.values.shape),
            "formula": step.formula,
            "values": json_numbers(step.values),
        },
        "sampling": None
        if ins.sampling is None
        else ins.sampling.to_dict() | {"chosen_token": ins.sampled_token},
    }
