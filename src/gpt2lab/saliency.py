"""Which input tokens made an output likely: saliency by gradient × input and by ablation.

The score of one output is f = log p(target | tokens 0..t) = log_softmax(logits[t])[target].
Each input token s enters the model as its token embedding e_s = W_E[ids[s]] (hook_embed),
and two named methods give it a score:

    gradient × input   ∂f/∂e_s · e_s          the first-order estimate of what removing e_s changes
    ablation           f - f(e_s set to 0)    what removing e_s really changes (one run per token)

Both are signed: above 0, the token made the target more likely. They are computed on the
model's named steps, the same code as a traced forward pass. The position embedding stays: the
token is removed, not its place.

    s = saliency(model, "Mike is quick. He moves", " fast")
    s.to_frame()                         # a row per input token, a column per method
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import UsageError
from .hooks import Hooks
from .model import eval_mode
from .prompts import PromptLike, prompt_batch, token_id

if TYPE_CHECKING:
    import pandas as pd

    from .model import GPT2

METHODS = ("gradient x input", "ablation")
# The ablation runs this many copies of the prompt at a time (one token removed in each).
_ROWS_PER_RUN = 16


@dataclass(frozen=True)
class Saliency:
    """The score of each input token for ``target`` at ``position``: ``gradient_x_input`` and
    ``ablation`` [T] (0 after ``position``: the model cannot see those tokens there)."""

    tokens: list[str]
    ids: list[int]
    target: int
    target_text: str
    position: int
    log_prob: float  # f, the target's log-probability at position
    gradient_x_input: Tensor
    ablation: Tensor

    def scores(self) -> dict[str, list[float]]:
        """The scores by method name (``METHODS``)."""
        return dict(zip(METHODS, (self.gradient_x_input.tolist(), self.ablation.tolist())))

    def to_frame(self) -> pd.DataFrame:
        """A table with a row per input token ("3 ' He'") and a column per method."""
        import pandas as pd

        index = [f"{t} {tok!r}" for t, tok in enumerate(self.tokens)]
        return pd.DataFrame(self.scores(), index=index)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain values and lists, for JSON."""
        return {
            "tokens": self.tokens,
            "ids": self.ids,
            "target": self.target,
            "target_text": self.target_text,
            "position": self.position,
            "log_prob": self.log_prob,
            "methods": self.scores(),
        }


def target_log_prob(logits: Tensor, position: int, target: int) -> Tensor:
    """f = log_softmax(logits[:, position])[target]: [B, T, V] -> [B]"""
    return torch.log_softmax(logits[:, position].float(), dim=-1)[:, target]


def zero_token(rows: Tensor) -> Hooks:
    """Hooks that set the token embedding of position rows[b] to 0 in batch row b."""

    def fn(embed: Tensor, _name: str) -> Tensor:  # [B, T, C]
        embed = embed.clone()
        embed[torch.arange(len(rows)), rows] = 0
        return embed

    return Hooks({"hook_embed": fn})


def saliency(model: GPT2, prompt: PromptLike, target: int | str, *, position: int = -1) -> Saliency:
    """Score each token of ``prompt`` for the log-probability of ``target`` (an id or a
    single-token text) at ``position``, by gradient × input and by ablation (see the module)."""
    ids = prompt_batch(model, prompt)
    if ids.shape[0] != 1:
        raise UsageError(f"saliency reads one prompt at a time; got a batch of {ids.shape[0]}")
    T = ids.shape[1]
    if isinstance(position, bool) or not isinstance(position, int) or not -T <= position < T:
        raise UsageError(f"position must be an integer in [-{T}, {T}), got {position!r}")
    t = position % T
    token = token_id(model, target)
    kept: dict[str, Tensor] = {}

    def leaf(embed: Tensor, _name: str) -> Tensor:
        kept["embed"] = embed.detach().requires_grad_(True)
        return kept["embed"]

    with eval_mode(model), torch.enable_grad():
        f = target_log_prob(model(ids, hooks=Hooks({"hook_embed": leaf})), t, token)[0]
        (grad,) = torch.autograd.grad(f, kept["embed"])
    gradient_x_input = (grad * kept["embed"]).sum(-1)[0].detach()
    removed = []
    with eval_mode(model), torch.no_grad():
        rows = torch.arange(t + 1, device=ids.device)
        for chunk in rows.split(_ROWS_PER_RUN):
            logits = model(ids[:, : t + 1].expand(len(chunk), -1), hooks=zero_token(chunk))
            removed.append(target_log_prob(logits, t, token))
    ablation = torch.zeros(T)
    ablation[: t + 1] = f.detach().cpu() - torch.cat(removed).cpu()
    tokenizer = model.tokenizer
    text = (lambda i: str(i)) if tokenizer is None else (lambda i: tokenizer.decode([i]))
    id_list = ids[0].tolist()
    return Saliency(
        tokens=[text(i) for i in id_list],
        ids=id_list,
        target=token,
        target_text=text(token),
        position=t,
        log_prob=float(f.detach()),
        gradient_x_input=gradient_x_input.cpu().float(),
        ablation=ablation,
    )
