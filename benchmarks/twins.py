"""The same random-weight GPT-2 in transformers and in gpt2lab, for side-by-side benchmarks."""

from __future__ import annotations

import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import gpt2lab


def twin_models(
    preset: str, seed: int = 0, layers: int | None = None
) -> tuple[GPT2LMHeadModel, gpt2lab.GPT2]:
    """transformers builds the preset's config with random weights and saves it; gpt2lab loads
    that folder. One set of weights, so timings compare the code, not the numbers.
    ``layers``: that many blocks instead of the preset's (a quick check of a script)."""
    c = gpt2lab.preset(preset)
    torch.manual_seed(seed)
    n_layer = c.n_layer if layers is None else layers
    hf = GPT2LMHeadModel(GPT2Config(n_embd=c.n_embd, n_layer=n_layer, n_head=c.n_head)).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = gpt2lab.load(folder).eval()
    return hf, ours
