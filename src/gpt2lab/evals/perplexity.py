"""Perplexity of WikiText-2, WikiText-103, PTB and One Billion Word, as the GPT-2 paper reports it.

    ppl = exp(total NLL / number of original tokens)

The NLL is of the whole text read in sliding windows (``scoring.sliding_windows``). It is divided
by the number of tokens of the dataset as published (its "canonical units"), not by GPT-2's BPE
tokens: those differ per model, and a word-level perplexity is what the papers compared against
report. Original tokens = the whitespace-separated tokens of the tokenized file plus one
end-of-line per line, the count the datasets' own papers give (WikiText-2 and -103 test:
245,569; PTB test: 82,430; 1BW: each sentence's words plus its end-of-sentence).

The model reads the text either as published ("raw": "guest @-@ starring , he said") or
de-tokenized (``detok``: "guest-starring, he said"), which GPT-2 finds far more natural. The
paper reports the de-tokenized numbers; the count of original tokens stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from .detok import detokenize, retokenize
from .scoring import TextScore, score_text

if TYPE_CHECKING:
    from ..model import GPT2


@dataclass(frozen=True)
class Corpus:
    """A word-level benchmark: the folder of its files (``data.SOURCES``), its de-tokenizer."""

    data: str
    detokenizer: str


CORPORA: dict[str, Corpus] = {
    "wikitext2": Corpus("wikitext-2", "wikitext"),
    "wikitext103": Corpus("wikitext-103", "wikitext"),
    "ptb": Corpus("ptb", "ptb"),
    "1bw": Corpus("1bw", "1bw"),  # One Billion Word
}


@dataclass(frozen=True)
class PerplexityResult:
    """A text scored in sliding windows: total ``nll`` (nats) over ``bpe_tokens`` BPE tokens that
    stand for ``units`` original units (``unit``: word, byte or character)."""

    task: str
    detokenized: bool
    unit: str
    units: int
    bpe_tokens: int
    nll: float
    windows: int
    context: int
    stride: int

    @property
    def ppl(self) -> float:
        """exp(NLL / units): perplexity per original token (per word)."""
        return math.exp(self.nll / self.units)

    @property
    def bpe_ppl(self) -> float:
        """exp(NLL / BPE tokens): perplexity per GPT-2 token (not comparable across tokenizers)."""
        return math.exp(self.nll / self.bpe_tokens)

    @property
    def bits_per_unit(self) -> float:
        """NLL / ln 2 / units: bits per byte (enwik8) or per character (text8)."""
        return self.nll / math.log(2) / self.units

    def to_dict(self) -> dict:
        return asdict(self) | {
            "ppl": self.ppl,
            "bpe_ppl": self.bpe_ppl,
            "bits_per_unit": self.bits_per_unit,
        }

    def metrics(self) -> list[tuple[str, str]]:
        """(metric, value) pairs to show."""
        if self.unit != "word":
            return [(f"bits per {self.unit}", f"{self.bits_per_unit:.4f}")]
        return [("ppl per word", f"{self.ppl:.2f}"), ("ppl per BPE token", f"{self.bpe_ppl:.2f}")]

    @classmethod
    def of(
        cls, task: str, scored: TextScore, detokenized: bool, unit: str, units: int
    ) -> PerplexityResult:
        """The result for a ``TextScore`` whose text stands for ``units`` original units."""
        return cls(
            task=task,
            detokenized=detokenized,
            unit=unit,
            units=units,
            bpe_tokens=scored.tokens,
            nll=scored.nll,
            windows=scored.windows,
            context=scored.context,
            stride=scored.stride,
        )

    def describe(self) -> str:
        text = "de-tokenized" if self.detokenized else "raw"
        return f"{text}, context {self.context}, stride {self.stride}, {self.windows} windows"


def original_tokens(lines: Sequence[str]) -> int:
    """Whitespace-separated tokens plus one end-of-line per line: the datasets' word count."""
    return sum(len(line.split()) + 1 for line in lines)


def _original_tokens_scored(lines: Sequence[str], scored: str, detokenizer: str | None) -> int:
    """Original tokens in ``scored``, the start of the text that the windows reached: its
    complete lines are counted from the file; a last, partial line (only under a window limit)
    is mapped back to the original tokenization first."""
    *complete, partial = scored.split("\n")
    if detokenizer is not None:
        partial = retokenize(detokenizer, partial)
    return original_tokens(lines[: len(complete)]) + len(partial.split())


def evaluate_perplexity(
    model: GPT2,
    task: str,
    lines: Sequence[str],
    *,
    detok: bool = True,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """Word-level perplexity of ``lines`` (a file of ``CORPORA[task]``), de-tokenized or raw.

    ``context`` (default n_positions) and ``stride`` (default context / 2) set the windows;
    ``limit`` scores only the first ``limit`` windows.
    """
    if task not in CORPORA:
        raise UsageError(f"unknown corpus {task!r}; choose from {sorted(CORPORA)}")
    detokenizer = CORPORA[task].detokenizer if detok else None
    shown = [detokenize(detokenizer, line) for line in lines] if detokenizer else list(lines)
    scored = score_text(
        model,
        "\n".join(shown) + "\n",
        context=context,
        stride=stride,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        desc=f"{task}{' detok' if detok else ' raw'}",
    )
    text = scored.scored_bytes.decode("utf-8", errors="replace")
    units = _original_tokens_scored(lines, text, detokenizer)
    return PerplexityResult.of(task, scored, detok, "word", units)
