"""LAMBADA: predict the last word of a passage, which humans get only from the whole passage.

Each passage of OpenAI's ``lambada_test.jsonl`` (5,153, de-tokenized by OpenAI for the GPT-2
paper) is split at its last space: context = the text before it, target = " " + the last word,
as GPT-2 writes a word after a space. The target may be several BPE tokens (" Harlin" is
" Har" + "lin"), so "did the model predict the word?" needs a definition:

- default, greedy match: every target token is the argmax given the context and the true
  tokens before it (teacher forcing), i.e. greedy decoding would write exactly the word;
- ``last_token``: only the word's final BPE token is scored (and its log p gives the
  perplexity). Easier: the first pieces of a word are given;
- ``stop_filter``: at the position where the word starts, the argmax is taken only over tokens
  that start a word (a leading space) and are not a stop word (``STOP_WORDS``). The paper added
  "a stop-word filter as an approximation" of the constraint that the word must end the
  sentence (63.24% vs 52.66% for 1542M); its exact filter is not published; this is ours.

Perplexity = exp(Σ NLL of the scored tokens / number of passages): per word, not per token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import UsageError
from .scoring import Request, require_tokenizer, score

if TYPE_CHECKING:
    from ..model import GPT2
    from ..tokenizer import Tokenizer

# NLTK's English stop-word list (179 words).
_NLTK_ENGLISH = """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their
    theirs themselves what which who whom this that that'll these those am is are was were be been
    being have has had having do does did doing a an the and but if or because as until while of
    at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very s t can
    will just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't
    didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't
    mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't
    wouldn wouldn't"""
STOP_WORDS = frozenset(_NLTK_ENGLISH.split())


@dataclass(frozen=True)
class LambadaResult:
    """``correct`` of ``n`` passages; ``nll``: total nats of the scored tokens."""

    task = "lambada"  # a class attribute, not a field: every result names its task
    n: int
    correct: int
    nll: float
    last_token: bool
    stop_filter: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    @property
    def ppl(self) -> float:
        """exp(NLL per passage): the perplexity of the last word (or of its last token)."""
        return math.exp(self.nll / self.n)

    def to_dict(self) -> dict:
        return {"task": self.task, **asdict(self), "accuracy": self.accuracy, "ppl": self.ppl}

    def metrics(self) -> list[tuple[str, str]]:
        """(metric, value) pairs to show."""
        return [("accuracy", f"{100 * self.accuracy:.2f}%"), ("ppl", f"{self.ppl:.2f}")]

    def describe(self) -> str:
        scope = "last BPE token" if self.last_token else "whole word, greedy match"
        return scope + (", stop-word filter" if self.stop_filter else "")


def split_last_word(text: str) -> tuple[str, str]:
    """(context, " " + last word): the passage cut at its last space."""
    context, space, word = text.rstrip().rpartition(" ")
    if not space or not context or not word:
        raise UsageError(f"a LAMBADA passage needs a context and a last word, got {text!r}")
    return context, " " + word


def stop_word_filter(tokenizer: Tokenizer, vocab_size: int) -> Tensor:
    """bool [vocab_size]: True for tokens that start a word (a space, then a non-space
    character) and are not a stop word."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    for i in range(min(vocab_size, tokenizer.vocab_size)):
        text = tokenizer.token_bytes(i).decode("utf-8", errors="replace")
        starts_word = len(text) > 1 and text[0] == " " and not text[1].isspace()
        allowed[i] = starts_word and text[1:].lower() not in STOP_WORDS
    return allowed


def evaluate_lambada(
    model: GPT2,
    texts: Sequence[str],
    *,
    last_token: bool = False,
    stop_filter: bool = False,
    batch_size: int = 16,
    limit: int | None = None,
    progress: bool = False,
) -> LambadaResult:
    """Accuracy and perplexity of the last word of each passage (see the module docstring)."""
    tokenizer = require_tokenizer(model)
    texts = list(texts)[:limit]
    if not texts:
        raise UsageError("no LAMBADA passages to evaluate")
    requests = []
    for text in texts:
        context, target = split_last_word(text)
        requests.append(
            Request(tokenizer.encode_ordinary(context), tokenizer.encode_ordinary(target))
        )
    allowed = stop_word_filter(tokenizer, model.config.vocab_size) if stop_filter else None
    scored = score(
        model,
        requests,
        batch_size=batch_size,
        first_allowed=allowed,
        progress=progress,
        desc="lambada",
    )
    part = slice(-1, None) if last_token else slice(None)
    return LambadaResult(
        n=len(texts),
        correct=sum(bool(s.greedy[part].all()) for s in scored),
        nll=-sum(float(s.logprobs[part].sum()) for s in scored),
        last_token=last_token,
        stop_filter=stop_filter,
    )
