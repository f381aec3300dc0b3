"""Children's Book Test: which of 10 candidate words fills the gap in a story's 21st sentence?

The paper's method (section 3.2, following the CBT paper's language-model baseline): complete the
sentence with each candidate and pick the candidate whose completion is most probable,

    choice = argmax_c  log p(c + rest of the sentence | 20 sentences + sentence up to the gap)

The words before the gap are the same for every candidate, so this ranks candidates exactly as
the probability of the whole completed sentence does. Scoring the rest of the sentence matters:
it is where a wrong candidate shows ("XXXXX barked" rules out "teapot"). The text is de-tokenized
first (``detok.py``, rules "cbt"), as CBT was tokenized for word-level models. The paper reports
the validation split because one test-set book (The Jungle Book) is in WebText.

CN: the missing word is a common noun; NE: a named entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from .data import CBTQuestion
from .detok import detokenize
from .scoring import Request, require_tokenizer, score

if TYPE_CHECKING:
    from ..model import GPT2
    from ..tokenizer import Tokenizer

GAP = "XXXXX"


@dataclass(frozen=True)
class CBTResult:
    task: str  # "cbt-cn" or "cbt-ne"
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def to_dict(self) -> dict:
        return asdict(self) | {"accuracy": self.accuracy}

    def metrics(self) -> list[tuple[str, str]]:
        """(metric, value) pairs to show."""
        return [("accuracy", f"{100 * self.accuracy:.2f}%")]

    def describe(self) -> str:
        return "10 candidates, probability of the completed sentence"


def completions(question: CBTQuestion, tokenizer: Tokenizer) -> list[Request]:
    """One request per candidate: (story + sentence up to the gap, candidate + rest)."""
    story = " ".join(detokenize("cbt", s) for s in question.sentences)
    before, _, after = detokenize("cbt", question.query).partition(GAP)
    prefix = f"{story} {before}"
    # GPT-2 writes a word with its leading space (" dog"), so the space before the gap belongs
    # to the candidate, not to the context.
    space = " " if prefix.endswith(" ") else ""
    context = tokenizer.encode_ordinary(prefix.removesuffix(" "))
    return [
        Request(context, tokenizer.encode_ordinary(f"{space}{c}{after}"))
        for c in question.candidates
    ]


def evaluate_cbt(
    model: GPT2,
    task: str,
    questions: Sequence[CBTQuestion],
    *,
    batch_size: int = 10,
    limit: int | None = None,
    progress: bool = False,
) -> CBTResult:
    """Accuracy on CBT questions (``task``: "cbt-cn" or "cbt-ne", a label for the result)."""
    tokenizer = require_tokenizer(model)
    questions = list(questions)[:limit]
    if not questions:
        raise UsageError("no CBT questions to evaluate")
    requests = [r for q in questions for r in completions(q, tokenizer)]
    scored = iter(score(model, requests, batch_size=batch_size, progress=progress, desc=task))
    correct = 0
    for q in questions:
        logprobs = [-next(scored).nll for _ in q.candidates]
        correct += q.candidates[logprobs.index(max(logprobs))] == q.answer
    return CBTResult(task, len(questions), correct)
