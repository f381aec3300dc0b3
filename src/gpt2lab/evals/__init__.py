"""Zero-shot evaluation with the GPT-2 paper's protocols (Radford et al. 2019, Table 3).

    gpt2lab eval lambada | cbt-cn | cbt-ne | wikitext2 | wikitext103 | ptb | 1bw | enwik8 | text8
    gpt2lab eval paper   # all of them that can be had, in a report beside the paper's numbers

Every benchmark reduces to ``scoring.score``: batched log-probabilities of continuation tokens
given a context. docs/evals.md explains each protocol choice and why it matters.
"""

from .bpb import evaluate_bits
from .cbt import CBTResult, evaluate_cbt
from .data import EvalDataError, find
from .detok import detokenize, retokenize
from .lambada import LambadaResult, evaluate_lambada
from .paper import TABLE3, PaperReport, run_paper
from .perplexity import PerplexityResult, evaluate_perplexity
from .scoring import Request, Scored, score, score_text, sliding_windows
from .tasks import TASKS, Settings, run_task

__all__ = [
    "TABLE3",
    "TASKS",
    "CBTResult",
    "EvalDataError",
    "LambadaResult",
    "PaperReport",
    "PerplexityResult",
    "Request",
    "Scored",
    "Settings",
    "detokenize",
    "evaluate_bits",
    "evaluate_cbt",
    "evaluate_lambada",
    "evaluate_perplexity",
    "find",
    "retokenize",
    "run_paper",
    "run_task",
    "score",
    "score_text",
    "sliding_windows",
]
