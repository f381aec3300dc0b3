"""logits -> next token: the sampling steps and the generation loop (KV cache, batches, streaming).

One step of sampling turns the last position's logits into a token:

    logits ─/temperature─▶ ─top-k─▶ ─top-p─▶ softmax ─▶ probabilities ─draw(seed)─▶ next id

Batches of prompts of different lengths are padded on the left; the padding is hidden from
attention and position ids start at each prompt's first real token, so every row computes
exactly what it would compute alone.

``explain_sampling`` shows that one step stage by stage, with the same code and the same seeded
draw as the generation loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor

from . import fast
from .errors import ContextLengthError, UsageError
from .hooks import Edits, Hooks, as_hooks
from .model import eval_mode
from .prompts import Prompt, is_single_prompt, prompt_ids
from .tokenizer import ENDOFTEXT

if TYPE_CHECKING:
    from .model import GPT2
    from .tokenizer import Tokenizer


# --- the sampling steps -----------------------------------------------------------------------
def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """(logits - max) / T: T < 1 sharpens the distribution, T > 1 flattens it.

    Subtracting each row's largest logit first changes no probability, and keeps a tiny T from
    overflowing to inf, whose softmax is NaN; a T too small for the dtype (1e-300 in float32 is
    0) is read as its smallest normal number, which leaves the same tokens: the top ones.
    """
    temperature = max(temperature, torch.finfo(logits.dtype).tiny)
    return (logits - logits.amax(dim=-1, keepdim=True)) / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row; the rest become -inf (probability 0)."""
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling: keep the fewest most likely tokens whose probabilities sum to >= p."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False  # the top token always stays, however small p is
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick the next token. Temperature 0 or greedy=True: always the most likely."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise UsageError for a value no model accepts. ``vocab_size`` None: the model is not
        known yet (a command checks its arguments before loading), so top_k has no upper bound."""
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and (
            isinstance(self.top_k, bool)
            or not isinstance(self.top_k, int)
            or not 1 <= self.top_k <= (vocab_size or self.top_k)
        ):
            allowed = f"in [1, {vocab_size}]" if vocab_size else ">= 1"
            raise UsageError(f"top_k must be an integer {allowed}, got {self.top_k}")
        if self.top_p is not None and not (
            isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1
        ):
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not -(2**63) <= self.seed < 2**64
        ):
            raise UsageError(f"seed must be an integer in [-2**63, 2**64), got {self.seed}")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def stages(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits / T, then top-k, then top-p) [B, V] each; an unset filter passes logits on."""
        scaled = apply_temperature(logits.float(), self.temperature)
        after_k = scaled if self.top_k is None else top_k_filter(scaled, self.top_k)
        after_p = after_k if self.top_p is None else top_p_filter(after_k, self.top_p)
        return scaled, after_k, after_p

    def distribution(self, logits: Tensor) -> Tensor:
        """The probabilities a draw is made from, after temperature, top-k and top-p. [B, V]"""
        return torch.softmax(self.stages(logits)[-1], dim=-1)

    def generator(self, device: torch.device | str) -> torch.Generator | None:
        """A fresh random generator seeded with ``seed`` (None: torch's global one is used)."""
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)

    def sample(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """Next token for each row of logits [B, V] -> [B]."""
        if self.is_greedy:
            return logits.float().argmax(dim=-1)  # float32's argmax kernel is the faster one
        probs = self.distribution(logits)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass(frozen=True)
class TokenStage:
    """One candidate token through the stages of a sampling step.

    ``prob_before``: softmax(logit / T) before any filter; ``prob``: the probability it is
    drawn with, renormalised over the tokens both filters kept.
    """

    token_id: int
    token: str | None
    logit: float
    scaled_logit: float
    prob_before: float
    kept_top_k: bool
    kept_top_p: bool
    prob: float


@dataclass(frozen=True)
class SamplingExplanation:
    """One sampling step, stage by stage: ``rows`` for the most likely tokens, ``kept_top_k``
    and ``effective_k`` the tokens left after top-k and after top-p, ``mass_kept`` their share
    of the probability before filtering, ``chosen`` the token drawn."""

    settings: SamplingSettings
    rows: tuple[TokenStage, ...]
    kept_top_k: int
    effective_k: int
    mass_kept: float
    chosen: int
    chosen_prob: float

    def to_dict(self) -> dict:
        return asdict(self) | {"rows": [asdict(row) for row in self.rows]}


@torch.no_grad()
def explain_sampling(
    logits: Tensor,
    settings: SamplingSettings,
    *,
    top: int = 10,
    tokenizer: Tokenizer | None = None,
) -> SamplingExplanation:
    """Show one sampling step for the next-token logits [V]: logits / T -> top-k -> top-p ->
    renormalised probabilities -> the draw, for the ``top`` most likely tokens.

    The draw is the generation loop's own (``settings.sample`` with ``settings.generator``), so
    with a seed ``chosen`` is the first token ``generate`` returns for these logits and settings.
    Greedy (``greedy=True`` or temperature 0) draws nothing: ``chosen`` is the argmax, the only
    token kept (probability 1), and the rows show the raw logits and softmax(logits) at T = 1.
    """
    if logits.dim() != 1:
        raise UsageError(
            f"explain_sampling takes one position's logits [V], got {list(logits.shape)}"
        )
    vocab_size = logits.shape[0]
    settings.validate(vocab_size)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UsageError(f"top must be a positive integer, got {top}")
    batch = logits[None]  # [1, V], the shape the generation loop samples from
    chosen = int(settings.sample(batch, settings.generator(logits.device))[0])
    if settings.is_greedy:
        scaled = batch.float()
        only_chosen = torch.full_like(scaled, float("-inf"))
        only_chosen[0, chosen] = scaled[0, chosen]
        after_k = after_p = only_chosen
    else:
        scaled, after_k, after_p = settings.stages(batch)
    prob_before = torch.softmax(scaled, dim=-1)[0]
    prob = torch.softmax(after_p, dim=-1)[0]
    kept_k = after_k[0] > float("-inf")
    kept_p = after_p[0] > float("-inf")
    order = torch.topk(logits.float(), min(top, vocab_size)).indices.tolist()
    rows = tuple(
        TokenStage(
            token_id=i,
            token=None if tokenizer is None else tokenizer.decode([i]),
            logit=float(logits[i]),
            scaled_logit=float(logits[i]) / (1.0 if settings.is_greedy else settings.temperature),
            prob_before=float(prob_before[i]),
            kept_top_k=bool(kept_k[i]),
            kept_top_p=bool(kept_p[i]),
            prob=float(prob[i]),
        )
        for i in order
    )
    return SamplingExplanation(
        settings=settings,
        rows=rows,
        kept_top_k=int(kept_k.sum()),
        effective_k=int(kept_p.sum()),
        mass_kept=float(prob_before[kept_p].sum()),
        chosen=chosen,
        chosen_prob=float(prob[chosen]),
    )


# --- prompts ----------------------------------------------------------------------------------
def _fit_context(
    ids: list[int], max_new_tokens: int, n_ctx: int, truncate: Literal["left"] | None
) -> list[int]:
    room = n_ctx - max_new_tokens
    if room < 1:
        raise ContextLengthError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the context of "
            f"{n_ctx} tokens"
        )
    if len(ids) <= room:
        return ids
    if truncate == "left":
        return ids[-room:]
    raise ContextLengthError(
        f"the prompt has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that exceeds "
        f"the context of {n_ctx}. Shorten it, ask for fewer tokens, or pass truncate='left' "
        f"(--truncate left) to keep its last {room} tokens"
    )


def stop_tokens(model: GPT2) -> list[int]:
    """The ids that end a text: the tokenizer's ``<|endoftext|>`` (GPT-2) and the config's
    ``eos_token_id`` (one or several, as Llama 3's files give them), where they are in the
    vocabulary: a model trained with its own tokenizer keeps GPT-2's 50256 in its config."""
    ids = [] if model.tokenizer is None else [model.tokenizer.special_tokens.get(ENDOFTEXT)]
    eos = model.config.eos_token_id
    ids += [eos] if isinstance(eos, int) else list(eos or ())
    vocab = model.config.vocab_size
    return list(dict.fromkeys(i for i in ids if i is not None and 0 <= i < vocab))


# --- the loop ---------------------------------------------------------------------------------
@torch.no_grad()
def _decode_steps(
    model: GPT2,
    prompts: list[list[int]],
    max_new_tokens: int,
    settings: SamplingSettings,
    stop_ids: list[int],
    hooks: Hooks | None = None,
) -> Iterator[Tensor]:
    """Yield the next token of every row [B], one step at a time, using a KV cache.

    Rows that already stopped keep yielding the first of ``stop_ids``; the loop ends when all
    have stopped.
    """
    device = model.device
    B, L = len(prompts), max(map(len, prompts))
    ids = torch.zeros((B, L), dtype=torch.long, device=device)
    is_real = torch.ones((B, L + max_new_tokens), dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, L - len(prompt) :] = torch.tensor(prompt, device=device)
        is_real[row, : L - len(prompt)] = False
    padded = not bool(is_real.all())
    positions = (is_real[:, :L].cumsum(dim=-1) - 1).clamp(min=0)
    generator = settings.generator(device)
    # On a GPU the steps after the prompt replay one recorded CUDA graph (gpt2lab.fast).
    graphed = (
        max_new_tokens > 1
        and model.cuda_graphs
        and fast.decodes_with_graphs(device)
        and model.uses_fast_path(hooks)
    )
    with fast.static_decoder(model, B, L + max_new_tokens) if graphed else nullcontext() as decoder:
        if decoder is not None:
            cache = decoder.start(is_real)
        else:
            cache = model.new_cache(B, L + max_new_tokens)
        mask = is_real[:, :L] if padded else None
        # The prompt's last position alone is unembedded: the others' logits are never used.
        x = model.hidden_states(
            ids, cache=cache, attention_mask=mask, positions=positions, hooks=hooks
        )
        logits = model.unembed(x[:, -1:], hooks)[:, -1]
        next_pos = positions[:, -1:] + 1
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        stops = torch.tensor(stop_ids, dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            token = settings.sample(logits, generator)
            if stop_ids:
                token = token.masked_fill(stopped, stop_ids[0])
                stopped |= torch.isin(token, stops)
            yield token
            if bool(stopped.all()) or step == max_new_tokens - 1:
                return
            if decoder is not None:
                logits = decoder(token, next_pos)
            else:
                mask = is_real[:, : cache.length + 1] if padded else None
                new_id = token[:, None]
                logits = model(
                    new_id, cache=cache, attention_mask=mask, positions=next_pos, hooks=hooks
                )[:, -1]
            next_pos = next_pos + 1


def generate(
    model: GPT2,
    prompt: Prompt | Sequence[Prompt] | Tensor,
    max_new_tokens: int = 50,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
    truncate: Literal["left"] | None = None,
    stream: bool = False,
    edits: Edits = None,
) -> list[int] | list[list[int]] | Iterator[int]:
    """Continue a prompt; return the new token ids.

    ``prompt``: text, a list of ids, or a list of several prompts (a batch -> a list of lists).
    Generation stops after ``max_new_tokens`` or, with ``stop_at_eos``, when the model emits an
    end token (``stop_tokens``: ``<|endoftext|>``, or Llama's ``eos_token_id``), which is not
    returned. ``seed`` makes sampling reproducible.
    ``stream=True`` (one prompt) returns an iterator that yields each id as it is chosen.
    ``edits`` (see gpt2lab.trace: steering vectors, ablations) apply at every step; with the KV
    cache each step computes only its new position, so an edit sees [B, 1, ...] values then.
    """
    settings = SamplingSettings(greedy, temperature, top_k, top_p, seed)
    settings.validate(model.config.vocab_size)
    hooks = None
    if edits is not None:
        hooks = as_hooks(edits)
        hooks.check(model.config)
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        raise UsageError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens}")
    if truncate not in (None, "left"):
        raise UsageError(f"truncate must be None or 'left', got {truncate!r}")
    single = is_single_prompt(prompt)
    if not single and (isinstance(prompt, Tensor) or not prompt):
        raise UsageError("pass a prompt (text or ids) or a non-empty list of prompts")
    # is_single_prompt tells one prompt from a batch at run time; the union cannot say which.
    batch = cast("list[Prompt | Tensor]", [prompt] if single else list(prompt))
    n_ctx = model.config.n_positions
    prompts = [_fit_context(prompt_ids(model, p), max_new_tokens, n_ctx, truncate) for p in batch]
    if stream and not single:
        raise UsageError("stream=True takes a single prompt")
    stop_ids = stop_tokens(model) if stop_at_eos else []

    def rows() -> Iterator[Tensor]:
        if max_new_tokens == 0:
            return
        with eval_mode(model):
            yield from _decode_steps(model, prompts, max_new_tokens, settings, stop_ids, hooks)

    if stream:
        return (int(t[0]) for t in rows() if int(t[0]) not in stop_ids)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for token in rows():
        for row, t in enumerate(token.tolist()):
            if done[row] or t in stop_ids:
                done[row] = True
            else:
                outputs[row].append(t)
    return outputs[0] if single else outputs


def generate_text(
    model: GPT2, prompt: Prompt | Sequence[Prompt], max_new_tokens: int = 50, **kwargs: Any
) -> str | list[str] | Iterator[str]:
    """Like ``generate``, but returns the new text (``stream=True``: yields it piece by piece)."""
    if model.tokenizer is None:
        raise UsageError("this model has no tokenizer, so it cannot produce text; use generate")
    out = generate(model, prompt, max_new_tokens, **kwargs)
    # generate's return type follows its arguments (stream; one prompt or a batch), which the
    # checker cannot see through **kwargs: each branch names the one it gets.
    if kwargs.get("stream"):
        return model.tokenizer.decode_stream(cast("Iterator[int]", out))
    lists = cast("list[int] | list[list[int]]", out)
    if lists and isinstance(lists[0], list):
        return [model.tokenizer.decode(ids) for ids in cast("list[list[int]]", lists)]
    return model.tokenizer.decode(cast("list[int]", lists))
