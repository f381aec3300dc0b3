"""text -> token ids: the one place that turns what a user passes as a prompt into ids.

A prompt is text (encoded with the model's tokenizer), a list of ids, or a tensor of ids; the
runners of gpt2lab.trace also take a batch (a list of texts or ids, or a tensor [B, T]), and
the analyses name single tokens by id, word or vocabulary entry (``token_id``). Generation,
traces, the lens and the web lab all read prompts through these functions, so a prompt means
the same thing and is refused with the same message everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import UsageError

if TYPE_CHECKING:
    from .model import GPT2
    from .tokenizer import Tokenizer

Prompt = str | Sequence[int]
PromptLike = str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]] | Tensor


def tokenizer_of(model: GPT2) -> Tokenizer:
    """The model's tokenizer; text needs one, so a model without one is an error."""
    if model.tokenizer is None:
        raise UsageError("this model has no tokenizer; pass token ids instead of text")
    return model.tokenizer


def is_single_prompt(prompt: object) -> bool:
    """True for one prompt (text, a list of ids, a tensor [T]), False for a batch of them."""
    if isinstance(prompt, str):
        return True
    if isinstance(prompt, Tensor):
        return prompt.dim() == 1
    return isinstance(prompt, Sequence) and len(prompt) > 0 and isinstance(prompt[0], int)


EMPTY_PROMPT = (
    "the prompt is empty; to sample unconditionally, start from '<|endoftext|>' "
    "(id 50256), the token GPT-2 saw between documents"
)


def prompt_ids(model: GPT2, prompt: Prompt | Tensor) -> list[int]:
    """The token ids of one prompt (text, ids or a tensor [T]), checked against the vocabulary.

    Text may contain special tokens such as ``<|endoftext|>``; an empty prompt is refused, as
    the model has nothing to continue.
    """
    if isinstance(prompt, str):
        ids = tokenizer_of(model).encode(prompt, allowed_special="all")
    else:
        ids = prompt.tolist() if isinstance(prompt, Tensor) else list(prompt)
    if not ids:
        raise UsageError(EMPTY_PROMPT)
    bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < model.config.vocab_size]
    if bad:
        raise UsageError(f"token ids must be in [0, {model.config.vocab_size}); got {bad[:5]}")
    return ids


def prompt_batch(model: GPT2, prompt: PromptLike) -> Tensor:
    """Token ids [B, T] for a text, a list of ids, a list of texts of equal token length, or a
    tensor [T] / [B, T]."""
    if isinstance(prompt, Tensor):
        rows = [prompt] if prompt.dim() == 1 else list(prompt)
    elif isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        rows = [prompt]
    else:
        rows = list(prompt)
    ids = [prompt_ids(model, row) for row in rows] if rows else [prompt_ids(model, [])]
    if len({len(r) for r in ids}) > 1:
        raise UsageError(
            f"a traced batch needs prompts of equal token length; got {[len(r) for r in ids]}"
        )
    if len(ids[0]) > model.config.n_positions:
        raise UsageError(
            f"the prompt has {len(ids[0])} tokens, more than the model's context of "
            f"{model.config.n_positions}"
        )
    return torch.tensor(ids, dtype=torch.long, device=model.device)


def to_tokens(model: GPT2, text: str | Sequence[str], *, prepend_bos: bool = False) -> Tensor:
    """Token ids [B, T] of a text (or of texts of equal token length), as TransformerLens's
    ``model.to_tokens``. ``prepend_bos`` puts ``<|endoftext|>`` first: TransformerLens does by
    default, gpt2lab only when asked, so that a prompt is the tokens of its text."""
    tokenizer = tokenizer_of(model)
    texts = [text] if isinstance(text, str) else list(text)
    bos = [tokenizer.eot_token] if prepend_bos else []
    return prompt_batch(model, [[*bos, *tokenizer.encode(t, allowed_special="all")] for t in texts])


def to_string(
    model: GPT2, ids: Tensor | Sequence[int] | Sequence[Sequence[int]]
) -> str | list[str]:
    """The text of token ids, as TransformerLens's ``model.to_string``: ids [T] -> str,
    [B, T] -> a str per row."""
    tokenizer = tokenizer_of(model)
    rows: list = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    if rows and not isinstance(rows[0], int):
        return [tokenizer.decode(row) for row in rows]
    return tokenizer.decode(rows)


def token_id(model: GPT2, query: int | str) -> int:
    """The one token id that ``query`` names: an id, a word, or a vocabulary entry.

    A str is first encoded as text (" happy" -> 3772) and must give exactly one token; a str
    that does not, but is a vocabulary entry in byte stand-ins ("Ġhappy", as
    ``embeddings.Neighbour.token`` shows it), names that entry.
    """
    vocab_size = model.config.vocab_size
    if isinstance(query, int):
        if not 0 <= query < vocab_size:
            raise UsageError(f"token id {query} is outside the vocabulary [0, {vocab_size})")
        return query
    tokenizer = tokenizer_of(model)
    ids = tokenizer.encode(query)
    if len(ids) == 1:
        return ids[0]
    if query in tokenizer.encoder:
        return tokenizer.encoder[query]
    pieces = [tokenizer.id_to_token(i) for i in ids]
    # The usual slip: "happy" (a text's first word) where " happy" (a word in a sentence) was meant.
    spaced = " " + query
    hint = f"; did you mean {spaced!r}?" if len(tokenizer.encode(spaced)) == 1 else ""
    raise UsageError(
        f"{query!r} is {len(ids)} tokens {pieces}, not one; choose a single-token word{hint}"
    )
