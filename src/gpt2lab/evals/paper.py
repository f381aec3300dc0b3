"""``gpt2lab eval paper``: every benchmark of the GPT-2 paper's Table 3 that can be had, in one
report (Markdown + JSON) beside the paper's numbers for the same model size."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_atomic as write_text_atomic  # noqa: F401 (its public name here)
from ..files import write_files
from .cbt import CBTResult
from .data import EvalDataError, sample_note
from .lambada import LambadaResult
from .tasks import TASKS, Result, Settings, run_task, task_data

if TYPE_CHECKING:
    from ..config import GPT2Config
    from ..model import GPT2

# Radford et al. (2019), "Language Models are Unsupervised Multitask Learners", Table 3: zero-shot
# results. Written down from the published paper (not from any file); LAMBADA accuracy is with
# the stop-word filter (the text gives 52.66% without it for 1542M).
COLUMNS = {
    "lambada_ppl": "LAMBADA (PPL)",
    "lambada_acc": "LAMBADA (ACC)",
    "cbt_cn": "CBT-CN (ACC)",
    "cbt_ne": "CBT-NE (ACC)",
    "wikitext2": "WikiText2 (PPL)",
    "ptb": "PTB (PPL)",
    "enwik8": "enwik8 (BPB)",
    "text8": "text8 (BPC)",
    "wikitext103": "WikiText103 (PPL)",
    "1bw": "1BW (PPL)",
}
_ROWS = {
    "SOTA": (99.8, 59.23, 85.7, 82.3, 39.14, 46.54, 0.99, 1.08, 18.3, 21.8),
    "117M": (35.13, 45.99, 87.65, 83.4, 29.41, 65.85, 1.16, 1.17, 37.50, 75.20),
    "345M": (15.60, 55.48, 92.35, 87.1, 22.76, 47.33, 1.01, 1.06, 26.37, 55.72),
    "762M": (10.87, 60.12, 93.45, 88.0, 19.93, 40.31, 0.97, 1.02, 22.05, 44.575),
    "1542M": (8.63, 63.24, 93.30, 89.05, 18.34, 35.76, 0.93, 0.98, 17.48, 42.16),
}
TABLE3: dict[str, dict[str, float]] = {row: dict(zip(COLUMNS, v)) for row, v in _ROWS.items()}
# The paper names models by its own parameter counts; gpt2, gpt2-medium, -large, -xl on the Hub.
SIZES = {(12, 768): "117M", (24, 1024): "345M", (36, 1280): "762M", (48, 1600): "1542M"}


def paper_size(config: GPT2Config) -> tuple[str, bool]:
    """(Table 3 row, exact): the row of this model's size, or else of the closest in width."""
    size = SIZES.get((config.n_layer, config.n_embd))
    if size is not None:
        return size, True
    closest = min(SIZES, key=lambda shape: abs(shape[1] - config.n_embd))
    return SIZES[closest], False


def table3_values(result: Result) -> dict[str, float]:
    """The Table 3 columns a result fills, in the paper's units (accuracy in %)."""
    if isinstance(result, LambadaResult):
        if result.last_token:
            return {}
        values = {"lambada_ppl": result.ppl}
        return values | ({"lambada_acc": 100 * result.accuracy} if result.stop_filter else {})
    if isinstance(result, CBTResult):
        return {result.task.replace("-", "_"): 100 * result.accuracy}
    if result.unit != "word":
        return {result.task: result.bits_per_unit}
    return {result.task: result.ppl} if result.detokenized else {}


@dataclass(frozen=True)
class PaperReport:
    """The results of ``run_paper``; ``skipped`` maps a task to why it did not run, ``samples``
    a task that ran on a shipped sample (not the full file) to the note saying so."""

    model: str
    config: dict[str, Any]
    size: str
    exact_size: bool
    results: list[Result]
    skipped: dict[str, str]
    settings: dict[str, Any]
    samples: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per Table 3 column, in the paper's order: ours beside the paper's."""
        ours: dict[str, tuple[float, Result]] = {}
        for result in self.results:
            for key, value in table3_values(result).items():
                ours.setdefault(key, (value, result))
        rows = []
        for key, title in COLUMNS.items():
            ours_value, ours_result = ours.get(key, (None, None))
            rows.append(
                {
                    "column": title,
                    "gpt2lab": ours_value,
                    "paper": TABLE3[self.size][key],
                    "settings": ours_result.describe() if ours_result is not None else None,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config,
            "paper_size": self.size,
            "paper_size_exact": self.exact_size,
            "table3": self.rows(),
            "results": [r.to_dict() for r in self.results],
            "skipped": self.skipped,
            "samples": self.samples,
            "settings": self.settings,
        }

    def to_markdown(self) -> str:
        size = self.size if self.exact_size else f"{self.size} (closest size; not this model)"
        c = self.config
        lines = [
            f"# {self.model} on the GPT-2 paper's benchmarks",
            "",
            f"Model: {self.model} ({c['n_layer']} layers, {c['n_embd']} wide, context "
            f"{c['n_positions']}). Paper: Radford et al. (2019), Table 3, row {size}.",
            "",
            *(
                [f"**Partial run** (--limit {self.settings['limit']}): not comparable.", ""]
                if self.settings.get("limit")
                else []
            ),
            *(
                [f"**Sample data** ({', '.join(self.samples)}): not comparable.", ""]
                if self.samples
                else []
            ),
            f"| benchmark | gpt2lab | paper {self.size} | settings |",
            "| --- | ---: | ---: | --- |",
        ]
        for row in self.rows():
            ours = "not run" if row["gpt2lab"] is None else f"{row['gpt2lab']:.2f}"
            lines.append(f"| {row['column']} | {ours} | {row['paper']} | {row['settings'] or ''} |")
        lines += ["", "## All results", "", "| task | settings | metric | value |"]
        lines.append("| --- | --- | --- | ---: |")
        for r in self.results:
            for metric, value in r.metrics():
                lines.append(f"| {r.task} | {r.describe()} | {metric} | {value} |")
        if self.samples:
            lines += ["", "## Run on a bundled sample", ""]
            lines += [f"- {task}: {note}" for task, note in self.samples.items()]
        if self.skipped:
            lines += ["", "## Not run", ""]
            lines += [f"- {task}: {why}" for task, why in self.skipped.items()]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write report.md and report.json into ``folder``: both to temporary files first, then
        renamed, so a report on disk is always a complete one, and a failed write (a full disk)
        leaves the previous report as it was, with no temporary file behind."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        md, js = folder / "report.md", folder / "report.json"
        write_files({md: self.to_markdown(), js: json.dumps(self.to_dict(), indent=2) + "\n"})
        return md, js


def run_paper(model: GPT2, name: str, settings: Settings | None = None) -> PaperReport:
    """Every Table 3 benchmark whose data can be found or downloaded (see ``data.find``), with the
    paper's protocol: LAMBADA (whole words) with and without the stop-word filter, CBT on the
    validation split, word-level corpora de-tokenized and raw. ``settings`` gives the data
    places, windows, batch size and limit. Benchmarks without data are in ``skipped``, with the
    reason."""
    settings = (settings or Settings()).replace(
        data=None, split=None, detok="both", last_token=False
    )
    runs = [("lambada", settings.replace(stop_filter=f)) for f in (False, True)]
    runs += [(task, settings) for task in TASKS if task != "lambada"]
    results: list[Result] = []
    skipped: dict[str, str] = {}
    samples: dict[str, str] = {}
    for task, task_settings in runs:
        try:
            path = task_data(task, task_settings)
            results += run_task(model, task, task_settings, path)
        except EvalDataError as e:
            skipped[task] = str(e)
            continue
        if note := sample_note(path):
            samples[task] = note
    size, exact = paper_size(model.config)
    config, used = model.config.to_dict(), dataclasses.asdict(settings)
    return PaperReport(name, config, size, exact, results, skipped, used, samples)
