"""Run one benchmark by name: find its file, read it, evaluate. Shared by the CLI and the report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import UsageError
from .bpb import UNITS, evaluate_bits
from .cbt import CBTResult, evaluate_cbt
from .data import find, read_cbt, read_lambada, read_lines, split_chars
from .lambada import LambadaResult, evaluate_lambada
from .perplexity import CORPORA, PerplexityResult, evaluate_perplexity

if TYPE_CHECKING:
    from ..model import GPT2

Result = LambadaResult | CBTResult | PerplexityResult
TASKS = ("lambada", "cbt-cn", "cbt-ne", "wikitext2", "ptb", "enwik8", "text8", "wikitext103", "1bw")


@dataclass(frozen=True)
class Settings:
    """How to run a task. ``data``: its file (else looked up: ``data.find``); ``split``: test,
    or valid (the default for CBT, as in the paper); ``detok``: word-level corpora read
    de-tokenized ("on"), as published ("off") or both; ``limit``: passages, questions or
    windows; ``last_token``, ``stop_filter``: LAMBADA's switches."""

    data: str | None = None
    data_dir: str | None = None
    download: bool = True
    split: Literal["test", "valid"] | None = None
    context: int | None = None
    stride: int | None = None
    batch_size: int = 8
    limit: int | None = None
    detok: Literal["both", "on", "off"] = "both"
    last_token: bool = False
    stop_filter: bool = False
    progress: bool = False

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def data_key(task: str, split: str) -> str:
    """The ``data.SOURCES`` key of a task's file."""
    if task in UNITS:  # enwik8, text8: one file, split by position
        return task
    return f"{CORPORA[task].data if task in CORPORA else task}/{split}"


def task_split(task: str, s: Settings) -> str:
    """The split ``task`` runs on: ``s.split``, else test (CBT: valid, as the paper)."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    split = s.split or ("valid" if task.startswith("cbt") else "test")
    if split != "test" and task in ("lambada", "1bw"):
        raise UsageError(f"{task}: only the test split is available")
    return split


def task_data(task: str, s: Settings) -> Path:
    """The data file ``task`` reads with settings ``s`` (``data.find``; ``data.sample_note``
    tells whether it is a shipped sample)."""
    key = data_key(task, task_split(task, s))
    return find(key, s.data, data_dir=s.data_dir, download=s.download, progress=s.progress)


def run_task(model: GPT2, task: str, s: Settings, path: Path | None = None) -> list[Result]:
    """Evaluate ``model`` on ``task`` (one of ``TASKS``): one result, or two for a word-level
    corpus with ``detok="both"`` (de-tokenized first). ``path``: its data file if already
    found (``task_data``)."""
    split = task_split(task, s)
    path = path or task_data(task, s)
    common: dict[str, Any] = {"batch_size": s.batch_size, "limit": s.limit, "progress": s.progress}
    windows = {**common, "context": s.context, "stride": s.stride}
    if task == "lambada":
        switches = {"last_token": s.last_token, "stop_filter": s.stop_filter}
        return [evaluate_lambada(model, read_lambada(path), **switches, **common)]
    if task.startswith("cbt"):
        return [evaluate_cbt(model, task, read_cbt(path), **common)]
    if task in UNITS:
        return [evaluate_bits(model, task, split_chars(path.read_bytes(), split), **windows)]
    lines = read_lines(path)
    detoks = {"both": (True, False), "on": (True,), "off": (False,)}[s.detok]
    return [evaluate_perplexity(model, task, lines, detok=d, **windows) for d in detoks]
