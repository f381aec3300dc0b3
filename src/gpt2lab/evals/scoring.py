"""Log-probabilities of continuations, in batches: the one primitive every evaluation uses.

    log p(continuation | context) = Σᵢ log softmax(logits before token i)[token i]

with teacher forcing: each continuation token is predicted from the context and the true tokens
before it. LAMBADA scores the last word given the passage, CBT each candidate's completion of a
sentence given the story, and perplexity a long text as overlapping windows, each one a context
plus the new tokens it scores (``sliding_windows``).

Requests of similar length are batched together and padded on the right. Right padding needs no
attention mask: attention is causal, so the padding after a sequence never reaches its real
positions, and positions count from 0 as for a sequence alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import UsageError
from ..trace import inference

if TYPE_CHECKING:
    from ..model import GPT2
    from ..tokenizer import Tokenizer

Ids = Sequence[int] | Tensor
UNEMBED_CHUNK = 1024  # scored positions unembedded at a time: 1,024 x 50,257 floats = 206 MB


@dataclass(frozen=True)
class Request:
    """Score ``continuation`` after ``context`` (at least one token: the first prediction needs
    something to condition on). A context too long for the model loses its start."""

    context: Ids
    continuation: Ids


@dataclass(frozen=True)
class Scored:
    """One request's result: per continuation token, log p (nats, float64) and whether it was
    the model's top choice (argmax, among ``first_allowed`` at the first position)."""

    logprobs: Tensor
    greedy: Tensor

    @property
    def nll(self) -> float:
        """-Σ log p: negative log-likelihood of the whole continuation, in nats."""
        return -float(self.logprobs.sum())


def _fit(request: Request, n_ctx: int) -> tuple[Tensor, int]:
    """(context + continuation ids [L], continuation length); the context is cut on the left."""
    context = torch.as_tensor(request.context, dtype=torch.long)
    continuation = torch.as_tensor(request.continuation, dtype=torch.long)
    n = len(continuation)
    if len(context) == 0 or n == 0:
        raise UsageError("each request needs at least one context and one continuation token")
    if n >= n_ctx:
        raise UsageError(
            f"a continuation of {n} tokens leaves no room for context in the model's "
            f"{n_ctx}-token window"
        )
    context = context[-(n_ctx - n) :]
    return torch.cat([context, continuation]), n


@torch.no_grad()
def _score_batch(
    model: GPT2, batch: list[tuple[Tensor, int]], first_allowed: Tensor | None
) -> list[Scored]:
    device = model.device
    lengths = [len(ids) for ids, _ in batch]
    ids = torch.zeros((len(batch), max(lengths)), dtype=torch.long)
    for row, (seq, _) in enumerate(batch):
        ids[row, : len(seq)] = seq
    ids = ids.to(device)
    # Position p predicts token p + 1, so a continuation of n tokens ending at L is predicted
    # from positions L-n-1 .. L-2. Only those go through the unembedding: for a small model it
    # is the costliest matmul, and full logits [B, T, 50257] need gigabytes for long windows.
    rows = torch.cat([torch.full((n,), r) for r, (_, n) in enumerate(batch)]).to(device)
    cols = torch.cat([torch.arange(L - n - 1, L - 1) for L, (_, n) in zip(lengths, batch)])
    cols = cols.to(device)
    targets = ids[rows, cols + 1]
    is_first = torch.cat([torch.arange(n) == 0 for _, n in batch]).to(device)
    with inference(model):
        x = model.hidden_states(ids)  # [B, T, C], through the fast path (no hooks, eval mode)
    hidden = x[rows, cols]  # [N, C]: the last block's output where a scored token is predicted
    logprobs, greedy = [], []
    for start in range(0, len(hidden), UNEMBED_CHUNK):
        part = slice(start, start + UNEMBED_CHUNK)
        logits = model.unembed(hidden[part]).float()  # [chunk, V]
        logp = logits.log_softmax(dim=-1)
        logprobs.append(logp.gather(1, targets[part, None])[:, 0].double())
        if first_allowed is not None:
            first = is_first[part, None] & ~first_allowed.to(device)[None, :]
            logits = logits.masked_fill(first, -math.inf)
        greedy.append(logits.argmax(dim=-1) == targets[part])
    logprobs_all = torch.cat(logprobs).cpu().split([n for _, n in batch])
    greedy_all = torch.cat(greedy).cpu().split([n for _, n in batch])
    return [Scored(lp, g) for lp, g in zip(logprobs_all, greedy_all)]


def score(
    model: GPT2,
    requests: Sequence[Request],
    *,
    batch_size: int = 8,
    first_allowed: Tensor | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> list[Scored]:
    """Log p of every continuation token of every request, ``batch_size`` sequences at a time.

    ``first_allowed`` (bool [V]): restrict the argmax at each continuation's first position to
    these tokens (LAMBADA's stop-word filter); log p is always over the whole vocabulary.
    Results come back in the order of ``requests``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size}")
    fitted = [_fit(r, model.config.n_positions) for r in requests]
    # Longest first: rows of a batch have similar lengths (little padding), and a batch too big
    # for memory fails at once rather than at the end.
    order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i][0]))
    results: list[Scored | None] = [None] * len(fitted)
    with tqdm(total=len(fitted), desc=desc, unit="seq", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            scored = _score_batch(model, [fitted[i] for i in chosen], first_allowed)
            for i, s in zip(chosen, scored):
                results[i] = s
            bar.update(len(chosen))
    return results  # type: ignore[return-value]


def sliding_windows(ids: Ids, context: int, stride: int, start_token: int) -> list[Request]:
    """A long text as windows of ``context`` tokens, ``stride`` apart, each token scored once.

    The text is ``[start_token] + ids``, so its first token is scored too. The first window
    scores its ``context - 1`` tokens; each later one scores only the ``stride`` tokens it adds,
    with the ``context - stride`` before them as context. A smaller stride gives every token more
    context (lower loss) at the cost of more windows: ~len(ids) / stride forward passes.
    """
    if not 1 <= stride < context:
        raise UsageError(f"stride must be in [1, context) = [1, {context}), got {stride}")
    seq = torch.cat([torch.tensor([start_token]), torch.as_tensor(ids, dtype=torch.long)])
    windows = []
    scored_until, begin = 1, 0  # seq[0], the start token, is context only
    while scored_until < len(seq):
        end = min(begin + context, len(seq))
        windows.append(Request(seq[begin:scored_until], seq[scored_until:end]))
        scored_until, begin = end, begin + stride
    return windows


@dataclass(frozen=True)
class TextScore:
    """A text scored in ``windows`` sliding windows of ``context`` tokens, ``stride`` apart: total
    ``nll`` (nats) of its first ``tokens`` BPE tokens, which spell ``scored_bytes`` (the whole
    text unless the windows were limited)."""

    nll: float
    tokens: int
    windows: int
    context: int
    stride: int
    scored_bytes: bytes


def score_text(
    model: GPT2,
    text: str,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = False,
    desc: str = "windows",
) -> TextScore:
    """-log p(text) by sliding windows (``sliding_windows``), preceded by ``<|endoftext|>``.

    ``context`` defaults to the model's n_positions and ``stride`` to half the context;
    ``limit`` scores only the first ``limit`` windows.
    """
    tokenizer = require_tokenizer(model)
    context = context or model.config.n_positions
    if not 2 <= context <= model.config.n_positions:
        raise UsageError(f"context must be in [2, {model.config.n_positions}], got {context}")
    stride = stride or context // 2
    ids = tokenizer.encode_ordinary(text)
    if not ids:
        raise UsageError("the text to score is empty")
    windows = sliding_windows(ids, context, stride, tokenizer.eot_token)[:limit]
    scored = score(model, windows, batch_size=batch_size, progress=progress, desc=desc)
    n_tokens = sum(len(w.continuation) for w in windows)
    return TextScore(
        nll=sum(s.nll for s in scored),
        tokens=n_tokens,
        windows=len(windows),
        context=context,
        stride=stride,
        scored_bytes=tokenizer.decode_bytes(ids[:n_tokens]),
    )


def require_tokenizer(model: GPT2) -> Tokenizer:
    """The model's tokenizer; evaluations read text, so a model without one is an error."""
    if model.tokenizer is None:
        raise UsageError("evaluation needs a model with a tokenizer (gpt2lab.load gives one)")
    return model.tokenizer
