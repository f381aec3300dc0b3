"""What the model would say if it stopped early: the logit lens and direct logit attribution.

The residual stream x [T, C] is what every block reads and adds to, and the model's output is
read from the last one: logits = ln_final(x) @ W_Eᵀ (the unembedding is the tied token
embedding). The *logit lens* (nostalgebraist, 2020) applies that same read-out to the residual
stream at every point of the forward pass:

    blocks.0.hook_resid_pre, blocks.0.hook_resid_mid, blocks.0.hook_resid_post, blocks.1...

    p_point = softmax(ln_final(x_point) @ W_Eᵀ)                       [T, V] at each point

and keeps the top-k tokens and, for a chosen token, its rank and probability at every point and
position (Ecco-style rankings: watch the answer climb from rank 3000 to rank 0). ln_final uses
the statistics of x_point itself, as the model would if the blocks after it were removed: a
LayerNorm its mean and variance; an RMSNorm (LLaMA) only its root mean square, x / sqrt(mean(x²)
+ ε) · g, with no mean taken out; a model without a final norm (GPT-1, post-norm: each block's
output is already normalized) reads x @ W_U with no norm at all. W_U is W_Eᵀ when the output
layer is tied, else the model's own ``lm_head``. The read-out of the last block's resid_post is
the model's real output.

*Direct logit attribution* splits one real logit into a sum over the model's components. The
final residual stream is a sum,

    x = embed + pos_embed + Σ_L (Σ_h z_h @ W_O[h] + b_O + mlp_out_L),

and ln_final(x) = (x - mean(x)) / sqrt(var(x) + ε) · g + b is linear in x once the divisor
s = sqrt(var(x) + ε) of the real x is held fixed, because centering is linear. So component c
adds (c - mean(c)) / s · g · W_E[token] to logit[token], the ln_final bias adds b · W_E[token],
and the contributions sum exactly to the logit. An RMSNorm has no centring and no bias: c adds
c / rms(x) · g · W_U[token]. Without a final norm c adds c · W_U[token]. In a post-norm model
(GPT-1) every block's ln_1 and ln_2 sit on the residual stream itself; each is linearized the
same way (its divisor read from the trace's ``hook_scale``), applied to every component before
it, and its bias becomes a component of its own, so the parts still sum to the logit.

    lens = logit_lens(model, "The cat sat on the", target=" mat")
    lens.to_frame("rank")                    # a table: points x positions
    parts = direct_logit_attribution(model, "The cat sat on the", " mat")
    parts.to_frame().sort_values("contribution")
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import UsageError
from .model import LayerNorm, Norm, layer_norm_scale, layer_norm_stats, rms_scale
from .prompts import PromptLike, token_id
from .tracing import Trace, run_with_cache

if TYPE_CHECKING:
    import pandas as pd

    from .model import GPT2, Attention

# Logits are computed for this many (position, vocabulary entry) pairs at a time, 64 MB in
# float32: all points at once would be [P, T, V], ~5 GB for 1024 tokens on GPT-2 small.
_CHUNK_ELEMENTS = 2**24


# --- the logit lens ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LogitLens:
    """The read-out at each point (P of them) and position (T), for one prompt.

    ``top_ids``/``top_probs`` [P, T, k]: the k most likely next tokens, most likely first.
    ``target_ids`` [T]: the token tracked at each position (-1: none there); ``target_rank``
    [P, T]: how many tokens are more likely than it (0 = the top token; -1 where there is no
    target); ``target_prob`` [P, T]: its probability (NaN where there is no target). The three
    target fields are None when no target was asked for.
    """

    points: list[str]
    tokens: list[str]
    top_ids: Tensor
    top_probs: Tensor
    top_tokens: list[list[list[str]]]
    target_ids: Tensor | None
    target_rank: Tensor | None
    target_prob: Tensor | None

    def to_frame(self, what: str = "top") -> pd.DataFrame:
        """A table with a row per point and a column per position ("3 ' cat'").

        ``what``: "top" (cells "' mat' (0.42)": the top token and its probability), "rank" or
        "prob" (of the target token).
        """
        import pandas as pd

        columns = [f"{t} {tok!r}" for t, tok in enumerate(self.tokens)]
        if what == "top":
            cells = [
                [f"{tokens[0]!r} ({probs[0]:.2f})" for tokens, probs in zip(row, prob_row)]
                for row, prob_row in zip(self.top_tokens, self.top_probs.tolist())
            ]
            return pd.DataFrame(cells, index=self.points, columns=columns)
        if what not in ("rank", "prob"):
            raise UsageError(f"what must be 'top', 'rank' or 'prob', got {what!r}")
        values = self.target_rank if what == "rank" else self.target_prob
        if values is None:
            raise UsageError(f"this lens tracks no target token, so it has no {what}; pass target=")
        return pd.DataFrame(values.numpy(), index=self.points, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain lists, for JSON; a missing target probability becomes None."""
        prob = self.target_prob
        return {
            "points": self.points,
            "tokens": self.tokens,
            "top_ids": self.top_ids.tolist(),
            "top_probs": self.top_probs.tolist(),
            "top_tokens": self.top_tokens,
            "target_ids": None if self.target_ids is None else self.target_ids.tolist(),
            "target_rank": None if self.target_rank is None else self.target_rank.tolist(),
            "target_prob": None
            if prob is None
            else [[None if math.isnan(p) else p for p in row] for row in prob.tolist()],
        }

    def _repr_html_(self) -> str:
        from .viz.html import lens_html

        return lens_html(self)


def lens_points(n_layer: int, points: str = "all") -> list[str]:
    """The residual-stream steps the lens reads, in order: blocks.0.hook_resid_pre, then each
    block's resid_mid and resid_post ("all", 2·n_layer + 1 points) or resid_post only ("post")."""
    if points == "all":
        steps: tuple[str, ...] = ("hook_resid_mid", "hook_resid_post")
    elif points == "post":
        steps = ("hook_resid_post",)
    else:
        raise UsageError(f"points must be 'all' or 'post', got {points!r}")
    return ["blocks.0.hook_resid_pre"] + [
        f"blocks.{layer}.{step}" for layer in range(n_layer) for step in steps
    ]


@torch.no_grad()
def logit_lens(
    model: GPT2,
    prompt_or_trace: PromptLike | Trace,
    *,
    k: int = 5,
    target: int | str | Sequence[int] | None = None,
    points: str = "all",
) -> LogitLens:
    """Read the next-token distribution out of the residual stream after every step of every
    block: softmax(ln_final(x) @ W_Eᵀ) at each point of ``lens_points`` and each position.

    ``prompt_or_trace``: a text or ids (the model is run on it), or a Trace of one prompt that
    kept those points. ``k``: how many top tokens to keep. ``target``: a token to follow through
    the layers: an id, a single-token text (" mat"), T ids (one per position, -1 for none), or
    "next" (the prompt's own next token; none at the last position). Its rank counts the tokens
    with a strictly larger probability, compared through their logits (softmax keeps the order).

    Only the top-k and the target's rank and probability are kept, so memory stays at one chunk
    of logits, whatever the number of points and positions.
    """
    names = lens_points(model.config.n_layer, points)
    trace = _one_prompt_trace(model, prompt_or_trace, names)
    vocab_size = model.config.vocab_size
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab_size:
        raise UsageError(f"k must be an integer between 1 and {vocab_size}, got {k!r}")
    ids = trace.ids[0].cpu()
    target_ids = _target_ids(model, target, ids)
    P, T = len(names), ids.numel()
    top_ids = torch.empty(P, T, k, dtype=torch.long)
    top_probs = torch.empty(P, T, k)
    rank = None if target_ids is None else torch.empty(P, T, dtype=torch.long)
    prob = None if target_ids is None else torch.empty(P, T)
    weight = model.transformer.wte.weight
    per_chunk = max(1, _CHUNK_ELEMENTS // vocab_size)
    for p, name in enumerate(names):
        x = trace[name][0]  # [T, C]
        for start in range(0, T, per_chunk):
            end = min(start + per_chunk, T)
            logits = model.unembed(x[start:end].to(weight.device, weight.dtype)).float()
            probs = torch.softmax(logits, dim=-1)  # [chunk, V]
            # Order by logit, not probability: tiny probabilities can round to equal floats.
            top = logits.topk(k, dim=-1).indices
            top_ids[p, start:end] = top.cpu()
            top_probs[p, start:end] = probs.gather(-1, top).cpu()
            if target_ids is not None and rank is not None and prob is not None:
                wanted = target_ids[start:end].to(logits.device)
                has = wanted >= 0
                index = wanted.clamp(min=0)[:, None]
                above = (logits > logits.gather(-1, index)).sum(-1)
                rank[p, start:end] = torch.where(has, above, -1).cpu()
                chosen = probs.gather(-1, index)[:, 0]
                prob[p, start:end] = torch.where(has, chosen, math.nan).cpu()
    text = _texts(model, top_ids.unique().tolist())
    top_tokens = [[[text[i] for i in row] for row in point] for point in top_ids.tolist()]
    return LogitLens(names, trace.tokens(0), top_ids, top_probs, top_tokens, target_ids, rank, prob)


def _target_ids(
    model: GPT2, target: int | str | Sequence[int] | None, ids: Tensor
) -> Tensor | None:
    """The token to track at each position [T] (-1: none), or None."""
    T = ids.numel()
    if target is None:
        return None
    if isinstance(target, str) and target == "next":
        return torch.cat([ids[1:], ids.new_tensor([-1])])
    if isinstance(target, (int, str)):
        return torch.full((T,), token_id(model, target), dtype=torch.long)
    try:
        per_position = torch.tensor([operator.index(i) for i in target], dtype=torch.long)
    except TypeError:
        raise UsageError(
            "target must be None, 'next', a token id, a single-token text or one id per "
            f"position; got {target!r}"
        ) from None
    vocab_size = model.config.vocab_size
    if per_position.shape != (T,):
        raise UsageError(f"target needs one id per position ({T}), got {per_position.numel()}")
    if ((per_position < -1) | (per_position >= vocab_size)).any():
        raise UsageError(f"target ids must be in [0, {vocab_size}) or -1 (none)")
    return per_position


# --- direct logit attribution -----------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    """How much each component of the model adds to logit[token] at ``position``.

    ``labels``, in the order of the forward pass: "embed" (W_E[id]), "pos_embed" (W_P[t]);
    for each block L, "L{L}H{h}" for each head h (z_h @ W_O[h]), "L{L} attn bias" (b_O) and
    "L{L} mlp" (mlp_out); last, "ln_final bias" (b · W_E[token]). ``values`` [len(labels)] sum
    to ``logit``, the model's real logit.
    """

    token: int
    token_text: str
    position: int
    labels: list[str]
    values: Tensor
    logit: float

    def to_frame(self) -> pd.DataFrame:
        """A table with a row per component and its "contribution" to the logit."""
        import pandas as pd

        return pd.DataFrame({"contribution": self.values.numpy()}, index=self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain values and lists, for JSON."""
        return {
            "token": self.token,
            "token_text": self.token_text,
            "position": self.position,
            "logit": self.logit,
            "labels": self.labels,
            "values": self.values.tolist(),
        }


def head_outputs(attn: Attention, z: Tensor) -> Tensor:
    """Each head's own term of attn_out: z_h @ W_O[h]. [..., H, D] -> [..., H, C] (z as hook_z
    holds it, [B, T, H, D], gives [B, T, H, C])

    W_O (``c_proj.weight``) is stored [in, out] = [H·D, C] and its input is the heads' z side by
    side, so head h owns rows h·D..(h+1)·D. Summed over heads, plus b_O, this is attn_out.
    """
    n_embd = attn.c_proj.weight.shape[1]
    w_o = attn.c_proj.weight.view(attn.n_head, -1, n_embd)  # [H, D, C]
    return torch.einsum("...hd,hdc->...hc", z, w_o)


@torch.no_grad()
def direct_logit_attribution(
    model: GPT2, prompt_or_trace: PromptLike | Trace, token: int | str, *, position: int = -1
) -> Attribution:
    """Split logit[token] at ``position`` into the contributions of the embeddings, every head,
    every attention bias and MLP, and the norms' biases; they sum to the real logit.

    contribution(c) = (c - mean(c)) / sqrt(var(x) + ε) · g · W_U[token], where x is the real
    final residual stream at ``position`` and g ln_final's gain (an RMSNorm takes no mean out and
    divides by sqrt(mean(x²) + ε); without a final norm c · W_U[token]); the bias adds
    b · W_U[token]. This is exact for the logit, but a head's contribution is not what removing
    the head would change: the blocks after it, and the divisor, would change too. Post-norm
    models: see the module docstring.
    """
    config = model.config
    n_layer, post = config.n_layer, config.norm_position == "post"
    final = f"blocks.{n_layer - 1}.hook_resid_post"
    has_pos = config.positions != "rope"
    names = ["hook_embed", *(["hook_pos_embed"] if has_pos else [])]
    for layer in range(n_layer):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
        if post:
            names += [f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.ln2.hook_scale"]
    names.append(final)
    trace = _one_prompt_trace(model, prompt_or_trace, names)
    token = token_id(model, token)
    T = trace.ids.shape[1]
    if isinstance(position, bool) or not isinstance(position, int) or not -T <= position < T:
        raise UsageError(f"position must be an integer in [-{T}, {T}), got {position!r}")
    t = position % T
    device = model.device

    def at(name: str) -> Tensor:
        return trace[name][0, t].to(device).float()

    rows = [at("hook_embed"), *([at("hook_pos_embed")] if has_pos else [])]
    labels = ["embed", *(["pos_embed"] if has_pos else [])]

    def through(norm: Norm, scale: Tensor, label: str) -> None:
        """Every component so far through the norm, linearized at the real x's divisor."""
        rows[:] = list(linearized_norm(norm, torch.stack(rows), scale))
        if norm.bias is not None:
            rows.append(norm.bias.float())
            labels.append(f"{label} bias")

    for layer, block in enumerate(model.transformer.h):
        rows += [*head_outputs(block.attn, at(f"blocks.{layer}.attn.hook_z"))]
        labels += [f"L{layer}H{h}" for h in range(block.attn.n_head)]
        if block.attn.c_proj.bias is not None:
            rows.append(block.attn.c_proj.bias.float())
            labels.append(f"L{layer} attn bias")
        if post:
            through(block.ln_1, at(f"blocks.{layer}.ln1.hook_scale"), f"L{layer} ln1")
        rows.append(at(f"blocks.{layer}.hook_mlp_out"))
        labels.append(f"L{layer} mlp")
        if post:
            through(block.ln_2, at(f"blocks.{layer}.ln2.hook_scale"), f"L{layer} ln2")
    ln_f = model.transformer.ln_f
    if ln_f is not None:
        through(ln_f, norm_scale(ln_f, at(final)), "ln_final")
    unembed = model.output_weight[token].float()  # W_U[:, token]
    return Attribution(
        token,
        _texts(model, [token])[token],
        t,
        labels,
        (torch.stack(rows) @ unembed).cpu(),
        float(trace.logits[0, t, token]),
    )


def norm_scale(norm: Norm, x: Tensor) -> Tensor:
    """The divisor the norm applies to x: sqrt(var(x) + ε) (LayerNorm) or sqrt(mean(x²) + ε)."""
    if isinstance(norm, LayerNorm):
        return layer_norm_scale(layer_norm_stats(x)[1], norm.eps)
    return rms_scale(x, norm.eps)


def linearized_norm(norm: Norm, parts: Tensor, scale: Tensor) -> Tensor:
    """The norm's map without its bias, with the divisor held at ``scale``: linear in x, so it
    applies to each part of x. LayerNorm: (c - mean(c)) / scale · g; RMSNorm: c / scale · g.
    parts [N, C] -> [N, C]"""
    if isinstance(norm, LayerNorm):
        parts = parts - parts.mean(dim=-1, keepdim=True)
    return parts / scale * norm.weight.float()


# --- shared -----------------------------------------------------------------------------------
def _one_prompt_trace(model: GPT2, prompt_or_trace: PromptLike | Trace, names: list[str]) -> Trace:
    """A trace of one prompt holding ``names``: the one given (checked), or a new run."""
    if isinstance(prompt_or_trace, Trace):
        trace = prompt_or_trace
        if trace.config != model.config:
            raise UsageError("the trace comes from a model with another config than this one")
        kept = set(trace)
        missing = [n for n in names if n not in kept]
        if missing:
            raise UsageError(
                f"the trace lacks {', '.join(missing)}; keep them with run_with_cache(model, "
                "prompt, names=...), or pass the prompt instead"
            )
    else:
        trace = run_with_cache(model, prompt_or_trace, names)
    if trace.ids.shape[0] != 1:
        raise UsageError(f"this reads one prompt at a time; got a batch of {trace.ids.shape[0]}")
    return trace


def _texts(model: GPT2, ids: list[int]) -> dict[int, str]:
    """The decoded text of each id (the id itself when the model has no tokenizer)."""
    tokenizer = model.tokenizer
    return {i: str(i) if tokenizer is None else tokenizer.decode([i]) for i in ids}
