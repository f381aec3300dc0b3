"""ids -> embeddings, looked at: which tokens lie close together, and where positions sit.

GPT-2's first block sees x₀ = W_E[id] + W_P[position] (``GPT2.embed``). This module studies the
two tables on their own, without running the model:

- ``nearest_tokens``: the rows of W_E [V, C] with the highest cosine similarity to one token's.
- ``pca_2d``: any set of vectors [N, C] projected on their two directions of largest variance.
- ``word_map``: chosen words' token embeddings and their 2-D PCA map.
- ``position_map`` / ``wpe_map``: one word at several positions (W_E[id] + W_P[p]), or the
  position embeddings alone, e.g. the real GPT-2 W_P read by ``load_raw_tensor``.

Words are looked up as single tokens. GPT-2's tokens for words inside a sentence carry their
leading space, so the word "happy" in "I am happy" is the token " happy" (shown "Ġhappy"), while
"happy" without the space is the token at the start of a text. Pass the form you mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import CheckpointError, UsageError
from .prompts import token_id, tokenizer_of

if TYPE_CHECKING:
    from .model import GPT2


@dataclass(frozen=True)
class Neighbour:
    """A token near the query: id, vocabulary entry ("Ġcat"), cos(W_E[query], W_E[id])."""

    id: int
    token: str
    cosine: float


@dataclass(frozen=True)
class WordMap:
    """Token embeddings of chosen words, ``vectors`` [N, C], and their PCA ``coords`` [N, 2].

    ``explained`` [2] is the share of the words' variance along each of the two axes.
    """

    labels: tuple[str, ...]
    ids: tuple[int, ...]
    vectors: Tensor
    coords: Tensor
    explained: Tensor


@dataclass(frozen=True)
class PositionMap:
    """Vectors at several positions, ``vectors`` [N, C] = W_E[token] + W_P[positions] (or W_P
    alone when ``token`` is None), and their PCA ``coords`` [N, 2] with ``explained`` [2].

    W_E[token] shifts every point by the same vector and PCA centres the points, so ``coords``
    are those of W_P alone. What the token changes is shown by ``token_cosine`` [N]:
    cos(vectors[i], W_E[token]), how much of the word's own direction is left at each position.
    """

    label: str
    token: int | None
    positions: tuple[int, ...]
    vectors: Tensor
    coords: Tensor
    explained: Tensor
    token_cosine: Tensor | None


@torch.no_grad()
def nearest_tokens(model: GPT2, query: int | str, k: int = 10) -> list[Neighbour]:
    """The k tokens whose embeddings have the highest cos(W_E[query], W_E[i]), query excluded.

    cos(a, b) = a·b / (|a| |b|), against every row of W_E [V, C]; sorted by cosine, highest first.
    """
    query_id = token_id(model, query)
    vocab_size = model.config.vocab_size
    if not 1 <= k < vocab_size:
        raise UsageError(f"k must be between 1 and {vocab_size - 1}; got {k}")
    unit = F.normalize(model.transformer.wte.weight.float(), dim=-1)  # [V, C], rows of length 1
    cosine = unit @ unit[query_id]  # [V]
    cosine[query_id] = -math.inf
    values, ids = cosine.topk(k)
    tokenizer = tokenizer_of(model)
    return [
        Neighbour(i, tokenizer.id_to_token(i), c) for i, c in zip(ids.tolist(), values.tolist())
    ]


def pca_2d(vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Project points on their two principal components. [N, C] -> coords [N, 2], ratio [2].

    X = vectors - mean, X = U S Vᵀ (SVD); coords = X @ V[:, :2]; ratio = S[:2]² / Σ S², the
    share of the total variance along each axis. Each component's sign is chosen so that its
    largest-magnitude loading is positive, which makes the map the same on every run and machine.
    """
    if vectors.dim() != 2 or vectors.size(0) < 2 or vectors.size(1) < 2:
        raise UsageError(
            f"pca_2d needs at least 2 points of at least 2 dimensions; got {list(vectors.shape)}"
        )
    x = vectors.detach().double()
    x = x - x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    total = s.pow(2).sum()
    if total == 0:
        raise UsageError("pca_2d: all points are identical, so there is no direction to show")
    components = vh[:2]  # [2, C]
    peak = components.abs().argmax(dim=1, keepdim=True)
    components = components * components.gather(1, peak).sign()
    coords = x @ components.T
    return coords.to(vectors.dtype), (s[:2].pow(2) / total).to(vectors.dtype)


@torch.no_grad()
def word_map(model: GPT2, words: Sequence[int | str]) -> WordMap:
    """The token embeddings W_E[id] [N, C] of chosen single-token words, and their 2-D PCA map."""
    ids = tuple(token_id(model, w) for w in words)
    vectors = model.transformer.wte.weight[list(ids)].float()
    coords, explained = pca_2d(vectors)
    return WordMap(tuple(str(w) for w in words), ids, vectors, coords, explained)


def _positions(positions: Sequence[int] | None, n_positions: int) -> tuple[int, ...]:
    positions = tuple(range(n_positions)) if positions is None else tuple(positions)
    bad = [p for p in positions if not 0 <= p < n_positions]
    if bad:
        raise UsageError(f"positions must lie in [0, {n_positions}); got {bad[:5]}")
    return positions


@torch.no_grad()
def wpe_map(wpe: Tensor, positions: Sequence[int] | None = None) -> PositionMap:
    """Position embeddings W_P[positions] [N, C] (default: every row) and their 2-D PCA map.

    ``wpe`` is a raw matrix [n_positions, C], such as GPT-2's own from ``load_raw_tensor``.
    """
    positions = _positions(positions, wpe.size(0))
    vectors = wpe[list(positions)].float()
    coords, explained = pca_2d(vectors)
    return PositionMap("W_P", None, positions, vectors, coords, explained, None)


@torch.no_grad()
def position_map(
    model: GPT2, word: int | str | None, positions: Sequence[int] | None = None
) -> PositionMap:
    """x₀ = W_E[word] + W_P[p] for each position p (what the first block sees), and its PCA map.

    With ``word=None`` this is ``wpe_map`` of the model's position embeddings.
    """
    if model.transformer.wpe is None:
        raise UsageError(
            f"this model has {model.config.positions} positions, not a learned table W_P to map"
        )
    wpe = model.transformer.wpe.weight
    if word is None:
        return wpe_map(wpe, positions)
    index = token_id(model, word)
    positions = _positions(positions, wpe.size(0))
    token_vector = model.transformer.wte.weight[index].float()
    vectors = token_vector + wpe[list(positions)].float()
    coords, explained = pca_2d(vectors)
    token_cosine = F.cosine_similarity(vectors, token_vector[None], dim=-1)
    return PositionMap(str(word), index, positions, vectors, coords, explained, token_cosine)


def load_raw_tensor(path: str | Path, shape: Sequence[int]) -> Tensor:
    """A tensor of this shape from a file of raw little-endian float32 values (``*.f32le``).

    The file must hold exactly prod(shape) values: a truncated file or a wrong shape is an error.
    """
    path = Path(path)
    expected = 4 * math.prod(shape)
    size = path.stat().st_size
    if size != expected:
        raise CheckpointError(
            f"{path} has {size:,} bytes; a float32 tensor of shape {list(shape)} needs {expected:,}"
        )
    tensor = torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(tuple(shape)))
    if not torch.isfinite(tensor).all():
        raise CheckpointError(f"{path} contains NaN or infinite values")
    return tensor
