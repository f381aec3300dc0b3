"""A forward pass you can look into and change: traces, stop-edit-resume, interventions, patching.

    trace = model.run_with_cache("Mike is quick. He moves")     # every named step (or some)
    trace["blocks.0.attn.hook_pattern"]                          # [1, H, T, T]
    trace.to_frame("blocks.0.hook_resid_post")                   # a pandas table
    trace.save_xlsx("gpt2.xlsx")                                 # GPT-2 as a spreadsheet

    paused = model.run_to("Mike is quick. He moves", "blocks.3.attn.hook_pattern")
    paused.value[0, 2] = ...                                     # change anything
    logits = paused.resume()                                     # and run on to the logits

An *edit* is a pair (step name, function) that replaces the value at that step; the helpers
here build the usual ones: ``ablate_head``, ``ablate_mlp``, ``scale_neuron``, ``add_vector``
(steering), ``set_to`` and ``patch`` (activation patching, also as a whole grid with
``activation_patching``). Every edit runs through the same model code as a plain forward pass.

This module is the one place to import all of it from. The code lives by job: prompts in
gpt2lab.prompts, edits as hooks in gpt2lab.hooks, ``Trace`` and the runners in gpt2lab.tracing,
the interventions in gpt2lab.interventions (which uses the runners, so it sits above them).
"""

from __future__ import annotations

from .hooks import Edit, Edits, as_hooks
from .interventions import (
    PatchingResult,
    ablate_head,
    ablate_mlp,
    activation_patching,
    add_vector,
    logit_difference,
    patch,
    scale_neuron,
    set_to,
    steering_vector,
)
from .model import inference
from .prompts import PromptLike, prompt_batch
from .tracing import Paused, Trace, run_from_block, run_to, run_with_cache, run_with_hooks

__all__ = [
    "Edit",
    "Edits",
    "PatchingResult",
    "Paused",
    "PromptLike",
    "Trace",
    "ablate_head",
    "ablate_mlp",
    "activation_patching",
    "add_vector",
    "as_hooks",
    "inference",
    "logit_difference",
    "patch",
    "prompt_batch",
    "run_from_block",
    "run_to",
    "run_with_cache",
    "run_with_hooks",
    "scale_neuron",
    "set_to",
    "steering_vector",
]
