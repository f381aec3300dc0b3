"""int8 weights: one signed byte per weight and one scale per output channel, written once.

The same rounding serves three places, so they cannot drift apart:

- ``GPT2.quantize("int8")`` rounds the float parameters in place (``quantize_model``);
- gpt2lab.fast multiplies the bytes and scales with torch's int8 kernel;
- gpt2lab.weights stores them in an int8 safetensors file and reads them back.

Rule (symmetric, per output channel o): s[o] = max|W[o, :]| / 127 in bfloat16 (the dtype the
int8 kernel multiplies in), q = round(W / s) in [-127, 127]. Quantizing q · s again gives q and s
back, so a saved, reloaded and requantized model holds the same values.

Which parameters are rounded: every weight matrix (SwiGLU's gate included), the token embedding
(its rows are the output layer's channels when tied) and an untied output layer ``lm_head``; not
the position embedding, which is added, not multiplied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import UsageError

if TYPE_CHECKING:
    from .model import GPT2

QUANTIZATIONS = ("int8",)


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: W[o, :] ≈ q[o, :] · s[o], s = max|W[o, :]| / 127.

    ``weight`` is [out, in]; returns q (int8 [out, in]) and s (bfloat16 [out], the dtype the
    int8 kernel multiplies in). Idempotent: quantizing q · s again gives q and s back.
    """
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    return q, scale


def dequantize_int8(q: Tensor, scale: Tensor) -> Tensor:
    """q · s per output channel, in float32. [out, in]"""
    return q.float() * scale.float()[:, None]


def output_axis(name: str, tensor: Tensor) -> int | None:
    """The axis of a parameter that holds its output channels, or None if it stays float.

    0 for the token embedding and ``lm_head`` ([V, C]: their rows are tokens, the unembedding's
    outputs); 1 for the [in, out] weight matrices; None for vectors and the position embedding.
    """
    if tensor.dim() != 2 or name.endswith("wpe.weight"):
        return None
    return 0 if name.endswith(("wte.weight", "lm_head.weight")) else 1


def quantize_matrix(weight: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """int8 q in ``weight``'s own layout and its scales shaped to broadcast over it.

    ``axis`` (see ``output_axis``): 0 -> scales [out, 1]; 1 -> scales [1, out]. ``q · scales``
    (``dequantize_matrix``) is the rounded matrix.
    """
    if axis == 0:
        q, scale = quantize_int8(weight)
        return q, scale[:, None]
    q, scale = quantize_int8(weight.t())
    return q.t().contiguous(), scale[None, :]


def dequantize_matrix(q: Tensor, scale: Tensor) -> Tensor:
    """q · scales in float32, with scales shaped as ``quantize_matrix`` returns them."""
    return q.float() * scale.float()


@torch.no_grad()
def quantize_model(model: GPT2, method: str) -> None:
    """Round every weight matrix (and the token embedding) to int8 per output channel, in place.

    The float parameters then hold the rounded values (exactly in float32; in bfloat16 up to its
    own rounding of q · s), so the named-step path, traces and saved files compute with the same
    weights as the int8 kernels of the fast path. Sets ``model.quantized`` to ``method``.
    """
    if method not in QUANTIZATIONS:
        raise UsageError(f"quantize must be one of {', '.join(QUANTIZATIONS)}; got {method!r}")
    for name, p in model.named_parameters():
        axis = output_axis(name, p)
        if axis is not None:
            p.copy_(dequantize_matrix(*quantize_matrix(p, axis)).to(p.dtype))
    model.quantized = method
