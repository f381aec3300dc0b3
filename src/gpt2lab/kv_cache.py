"""What attention may look at: the keys and values kept from earlier positions, and the mask.

``KVCache`` holds every layer's keys and values, so that generation computes only the new
positions; ``causal_mask`` says which keys each query may attend to. Both the named steps
(gpt2lab.model) and the fused fast path (gpt2lab.fast) use them, so they live below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .config import GPT2Config


def causal_mask(
    n_new: int, n_past: int, key_padding: Tensor | None, device: torch.device
) -> Tensor | None:
    """Which keys each query may attend to. -> bool [B or 1, 1, T, S], or None if all may.

    Query t (absolute position n_past + t) sees keys 0..n_past + t. Keys marked False in
    ``key_padding`` [B, S] are hidden too, except from themselves, so that a padding query never
    has an all-masked row (softmax of all -inf is NaN); its output is never used.
    """
    S = n_past + n_new
    query_pos = torch.arange(n_past, S, device=device)[:, None]
    key_pos = torch.arange(S, device=device)[None, :]
    allowed = key_pos <= query_pos  # [T, S]
    if key_padding is None:
        return None if n_new == 1 else allowed[None, None]
    allowed = allowed & key_padding[:, None, :]  # [B, T, S]
    allowed = allowed | (key_pos == query_pos)
    return allowed[:, None]


class KVCache:
    """Keys and values of the positions seen so far, per layer, preallocated to ``max_len``.

    Generation feeds one new token at a time; without a cache every step would recompute the
    keys and values of the whole prefix. ``k[layer]`` is [B, K, max_len, D] with K the key/value
    heads (fewer than the query heads with grouped-query attention: that is what it saves;
    attention repeats them afterwards); ``length`` counts the positions filled.
    """

    def __init__(
        self, config: GPT2Config, batch: int, max_len: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        shape = (config.n_layer, batch, config.n_key_value_heads, max_len, config.head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' k, v [B, K, T, D]; return all so far [B, K, length + T, D]."""
        start, end = self.length, self.length + k.size(2)
        keys, values = self.k[layer], self.v[layer]
        # narrow + copy_: fewer Python-level indexing steps, once per layer and token
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def write_at(self, layer: int, k: Tensor, v: Tensor, slot: Tensor) -> tuple[Tensor, Tensor]:
        """Store one new position's k, v [B, K, 1, D] at the index held in ``slot`` (a tensor [1],
        so that a recorded CUDA graph can replay it at any position); return all ``max_len``
        slots [B, K, max_len, D], the unwritten ones included (gpt2lab.fast masks them)."""
        self.k[layer].index_copy_(2, slot, k)
        self.v[layer].index_copy_(2, slot, v)
        return self.k[layer], self.v[layer]

    def advance(self, n: int) -> None:
        self.length += n
