"""The page's edits as the library's: each parsed ``EditSpec`` of a request becomes the edit of
gpt2lab.trace that a notebook user would write (``ablate_head``, ``scale_neuron``, ...).

Layers, heads and neurons are checked by those edits themselves; what only a request can get
wrong (a ``set_value`` index or a value that does not fit its step) is checked here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UsageError, check_index
from ..model import GPT2
from ..sae import SAE, steer
from ..trace import (
    Edit,
    ablate_head,
    ablate_mlp,
    add_vector,
    scale_neuron,
    set_to,
    steering_vector,
)
from .schemas import AblateHead, AblateMlp, EditSpec, SaeFeature, ScaleNeuron, SetValue, Steer


def library_edits(
    model: GPT2,
    ids: list[int],
    specs: list[EditSpec],
    check_text: Callable[[str], object],
    sae_of: Callable[[str], SAE] | None = None,
) -> list[Edit]:
    """The library's edits for the specs, in order (a value is set after the edits before it
    have run). ``check_text`` checks a steering edit's texts: the prompt's limits hold for them
    too. ``sae_of`` gives an ``sae_feature`` edit's SAE by its name (or refuses it)."""
    edits: list[Edit] = []
    for spec in specs:
        if isinstance(spec, AblateHead):
            edits.append(ablate_head(spec.layer, spec.head, spec.how))
        elif isinstance(spec, AblateMlp):
            edits.append(ablate_mlp(spec.layer, spec.how))
        elif isinstance(spec, ScaleNeuron):
            edits.append(scale_neuron(spec.layer, spec.neuron, spec.factor))
        elif isinstance(spec, Steer):
            for text in (spec.positive, spec.negative):
                check_text(text)
            vector = steering_vector(model, spec.positive, spec.negative, spec.layer)
            edits.append(add_vector(spec.layer, vector, scale=spec.scale))
        elif isinstance(spec, SaeFeature):
            if sae_of is None:
                raise UsageError("this server has no SAEs (gpt2lab serve --sae NAME)")
            edits.append(steer(sae_of(spec.sae), spec.feature, spec.strength, mode=spec.mode))
        else:
            edits.append(set_value_edit(model, ids, spec, list(edits)))
    return edits


def set_value_edit(model: GPT2, ids: list[int], spec: SetValue, before: list[Edit]) -> Edit:
    """Run to ``spec.step`` with the edits ``before``, set one number, and edit with ``set_to``
    the value there: the forward pass goes on from the changed value."""
    paused = model.run_to(ids, spec.step, edits=before)
    value = paused.value
    if len(spec.index) != value.dim() - 1:
        raise UsageError(
            f"{paused.name} has shape {list(value.shape)}: give {value.dim() - 1} indices "
            "(every dimension after the batch)"
        )
    for dim, i in enumerate(spec.index, start=1):
        check_index(f"index {dim - 1} of {paused.name}", i, value.shape[dim])
    largest = torch.finfo(value.dtype).max
    if not abs(spec.value) <= largest:
        raise UsageError(
            f"value {spec.value:g} does not fit in {paused.name}, a {value.dtype} tensor "
            f"(largest {largest:g})"
        )
    index = (0, *spec.index)  # batch row 0
    value[index] = spec.value
    return set_to(paused.name, value)


def check_finite(logits: Tensor, specs: list[EditSpec]) -> None:
    """Refuse logits with inf or NaN: sampling cannot draw from them, and with edits the cause
    is an edit's number too large."""
    if not bool(torch.isfinite(logits).all()):
        raise UsageError(
            "the logits are inf or NaN"
            + (": an edit's factor, scale or value is too large" if specs else "")
        )
