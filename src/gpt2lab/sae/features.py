"""Looking at one SAE feature, and steering the model with it.

``feature_report(model, sae, tokens, i)`` reads a dataset once and gathers what a feature
dashboard shows: the contexts where feature i fires hardest, the histogram of its non-zero
activations, how often it fires, and the tokens its direction promotes and suppresses through
the unembedding (``logit_effects``). ``active_features`` lists the features firing on a prompt's
tokens (how one finds a "dog" feature). ``steer`` is an edit for ``model.generate(...,
edits=[...])``: the Golden Gate demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from ..errors import UsageError, check_index
from ..hooks import Edit
from ..lens import linearized_norm
from ..model import GPT2, inference
from ..prompts import PromptLike, prompt_batch
from .autoencoder import SAE, activations_at

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer


def _decode(tokenizer: Tokenizer | None, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) if tokenizer else str(i) for i in ids]


# --- what a feature writes ----------------------------------------------------------------------
@torch.no_grad()  # the norm's gain is a parameter: no graph for a read-out
def logit_effects(model: GPT2, sae: SAE, feature: int) -> Tensor:
    """How adding feature i's direction to the residual stream moves each token's logit [V].

    d = W_dec[i] goes through ln_final before the unembedding W_U (W_Eᵀ if tied). LayerNorm takes
    out the mean over channels, divides by a positive per-token scale, multiplies by its gain γ,
    so, as feature dashboards do (Bricken et al. 2023; SAE Lens / Neuronpedia fold γ into W_U),
    the effect is ((d - mean(d)) ⊙ γ) @ W_U, up to that positive scale. ln_final's bias adds the
    same to every feature, so it is left out. Meaningful for residual-stream steps; for other
    steps (an MLP's hidden layer) the direction is not in the residual space and this is refused.
    """
    check_index("feature", feature, sae.cfg.d_sae)
    if sae.cfg.d_in != model.config.n_embd:
        raise UsageError(
            f"{sae.hook_name} is {sae.cfg.d_in} wide, not the residual stream's "
            f"{model.config.n_embd}: its features have no direct effect on the logits"
        )
    w_u = model.output_weight.detach().float()
    direction = sae.W_dec[feature].detach().float().to(w_u.device)[None]
    ln_f = model.transformer.ln_f
    if ln_f is not None:  # an RMSNorm takes no mean out; a model without ln_final has no γ
        direction = linearized_norm(ln_f, direction, torch.ones(1, device=w_u.device))
    return direction[0] @ w_u.T


@dataclass(frozen=True)
class TokenEffect:
    token: str
    id: int
    effect: float


def promoted_tokens(
    model: GPT2, sae: SAE, feature: int, n: int = 10
) -> tuple[list[TokenEffect], list[TokenEffect]]:
    """The ``n`` tokens feature i raises most, and the ``n`` it lowers most (``logit_effects``)."""
    effects = logit_effects(model, sae, feature)
    top = torch.topk(effects, n)
    bottom = torch.topk(-effects, n)
    tok = model.tokenizer

    def rows(values: Tensor, ids: Tensor, sign: float) -> list[TokenEffect]:
        ids_list = ids.tolist()
        names = _decode(tok, ids_list)
        return [TokenEffect(s, i, sign * float(v)) for s, i, v in zip(names, ids_list, values)]

    return rows(top.values, top.indices, 1.0), rows(bottom.values, bottom.indices, -1.0)


# --- where a feature fires ----------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """A place where the feature fired: the tokens around it and the feature's activation on
    each (``tokens[at]`` is the token with the activation ``peak``)."""

    tokens: list[str]
    activations: list[float]
    at: int
    peak: float


@dataclass(frozen=True)
class FeatureReport:
    """What a feature dashboard shows (``_repr_html_`` draws it in Jupyter, ``write_html``
    into a self-contained file)."""

    feature: int
    hook_name: str
    tokens_read: int
    fraction_active: float  # share of tokens on which it fires
    max_activation: float
    contexts: list[Context]
    histogram: tuple[list[float], list[int]]  # bin edges (n + 1), counts (n) of non-zero values
    promoted: list[TokenEffect]
    suppressed: list[TokenEffect]

    def _repr_html_(self) -> str:
        from ..viz.html import feature_html

        return feature_html(self, standalone=False)

    def write_html(self, path: str | Path) -> Path:
        """A self-contained HTML page of this dashboard (nothing loads from the network)."""
        from ..viz.html import write_feature_html

        return write_feature_html(self, path)


def feature_activations(
    model: GPT2, sae: SAE, tokens, feature: int, *, context: int = 128, max_tokens: int = 65_536
) -> tuple[Tensor, Tensor]:
    """Feature i's activation on each of the first ``max_tokens`` tokens of ``tokens`` (read in
    consecutive windows of ``context``): (ids [W, context], activations [W, context])."""
    check_index("feature", feature, sae.cfg.d_sae)
    n = min(len(tokens) // context, max(1, max_tokens // context))
    if n < 1:
        raise UsageError(f"{len(tokens)} tokens are fewer than one window of {context}")
    ids = torch.from_numpy(tokens[: n * context].astype("int64")).view(n, context)
    acts = []
    with inference(model):
        for chunk in ids.split(32):
            x = activations_at(model, chunk.to(model.device), sae.hook_name).float()
            acts.append(sae.encode(x)[..., feature].cpu())
    return ids, torch.cat(acts)


def feature_report(
    model: GPT2,
    sae: SAE,
    tokens,
    feature: int,
    *,
    n_contexts: int = 10,
    window: int = 12,
    bins: int = 30,
    n_tokens: int = 10,
    context: int = 128,
    max_tokens: int = 65_536,
) -> FeatureReport:
    """Feature i on a dataset: its top ``n_contexts`` contexts (``window`` tokens either side of
    the peak; one per window of the data, so they are different passages), its histogram,
    how often it fires, and the tokens it promotes and suppresses."""
    ids, acts = feature_activations(
        model, sae, tokens, feature, context=context, max_tokens=max_tokens
    )
    best, where = acts.max(dim=1)  # the peak of each window
    order = [int(w) for w in torch.argsort(best, descending=True) if best[w] > 0][:n_contexts]
    contexts = []
    for w in order:
        at = int(where[w])
        lo, hi = max(0, at - window), min(context, at + window + 1)
        contexts.append(
            Context(
                tokens=_decode(model.tokenizer, ids[w, lo:hi].tolist()),
                activations=[round(float(a), 4) for a in acts[w, lo:hi]],
                at=at - lo,
                peak=float(best[w]),
            )
        )
    nonzero = acts[acts > 0]
    top = float(nonzero.max()) if nonzero.numel() else 0.0
    counts = torch.histc(nonzero, bins=bins, min=0.0, max=top) if top > 0 else torch.zeros(bins)
    edges = torch.linspace(0.0, top, bins + 1)
    promoted, suppressed = (
        promoted_tokens(model, sae, feature, n_tokens)
        if sae.cfg.d_in == model.config.n_embd
        else ([], [])
    )
    return FeatureReport(
        feature=feature,
        hook_name=sae.hook_name,
        tokens_read=acts.numel(),
        fraction_active=float((acts > 0).float().mean()),
        max_activation=top,
        contexts=contexts,
        histogram=([float(e) for e in edges], [int(c) for c in counts]),
        promoted=promoted,
        suppressed=suppressed,
    )


def active_features(
    model: GPT2, sae: SAE, prompt: PromptLike, n: int = 5
) -> list[tuple[str, list[tuple[int, float]]]]:
    """For each token of a prompt, its ``n`` strongest firing features:
    [(token, [(feature, activation), ...]), ...], one pair per position."""
    ids = prompt_batch(model, prompt)[:1]
    with inference(model):
        f = sae.encode(activations_at(model, ids, sae.hook_name).float())[0]
    top = torch.topk(f, min(n, sae.cfg.d_sae), dim=-1)
    names = _decode(model.tokenizer, ids[0].tolist())
    return [
        (name, [(int(i), float(v)) for v, i in zip(vals, idx) if v > 0])
        for name, vals, idx in zip(names, top.values, top.indices)
    ]


# --- steering -----------------------------------------------------------------------------------
def steer(
    sae: SAE, feature: int, strength: float, *, mode: Literal["add", "clamp"] = "add"
) -> Edit:
    """An edit at the SAE's step that turns feature i up (the Golden Gate demo).

    ``add``: x <- x + strength · W_dec[i] at every position (W_dec[i] is unit length, so
    ``strength`` is in the step's units; compare the feature's top activations).
    ``clamp``: the feature's activation is set to ``strength`` wherever the SAE reads it:
    x <- x + (strength - f_i(x)) · W_dec[i], which keeps everything the SAE does not explain.
    Pass it to ``model.generate(..., edits=[...])``, ``run_with_hooks`` or ``run_with_cache``.
    """
    check_index("feature", feature, sae.cfg.d_sae)
    if mode not in ("add", "clamp"):
        raise UsageError(f"mode must be 'add' or 'clamp', not {mode!r}")
    direction = sae.W_dec[feature].detach()

    def fn(x: Tensor, _name: str) -> Tensor:  # [B, T, d_in]
        d = direction.to(x.device, x.dtype)
        if mode == "add":
            return x + strength * d
        with torch.no_grad():
            current = sae.encode(x.float())[..., feature : feature + 1].to(x.dtype)
        return x + (strength - current) * d

    return sae.hook_name, fn
