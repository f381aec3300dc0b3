"""Bits per byte (enwik8) and bits per character (text8): compression benchmarks.

    bits per unit = total NLL / ln 2 / number of units

enwik8 is the first 10⁸ bytes of an English Wikipedia XML dump, text8 the same dump cleaned to
lower-case letters and spaces (10⁸ characters, one line). Both are split 90M / 5M / 5M; the last
5M are the test set (``data.split_chars``). The NLL is of the whole text in sliding windows, and
units are counted in the text the windows scored: UTF-8 bytes for enwik8, characters for text8
(the same thing there, as text8 is ASCII).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from .perplexity import PerplexityResult
from .scoring import score_text

if TYPE_CHECKING:
    from ..model import GPT2

UNITS = {"enwik8": "byte", "text8": "character"}


def evaluate_bits(
    model: GPT2,
    task: str,
    text: str,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """Bits per byte (``task="enwik8"``) or per character (``"text8"``) of ``text``; its
    ``bits_per_unit`` is the number. Windows as in ``scoring.score_text``."""
    if task not in UNITS:
        raise UsageError(f"unknown task {task!r}; choose from {sorted(UNITS)}")
    scored = score_text(
        model,
        text,
        context=context,
        stride=stride,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        desc=task,
    )
    unit = UNITS[task]
    units = len(scored.scored_bytes)
    if unit == "character":
        units = len(scored.scored_bytes.decode("utf-8", errors="replace"))
    return PerplexityResult.of(task, scored, False, unit, units)
