"""``gpt2lab eval TASK``: parses arguments, runs a benchmark (``evals.tasks.run_task``), prints
a table.

``gpt2lab.cli.build_parser`` registers it with ``add_eval_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import OutputError, UsageError
from ..evals.data import sample_note
from ..evals.tasks import TASKS, Result, Settings, run_task, task_data
from ..files import reason, write_atomic
from .common import DEFAULT_MODEL, add_model_args, at_least, load_model_arg, prepare_output


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` command to ``gpt2lab``'s subparsers; returns its parser."""
    count = at_least(1)

    p = subparsers.add_parser(
        "eval",
        help="zero-shot benchmarks of the GPT-2 paper (LAMBADA, CBT, WikiText, PTB, ...)",
        description="Evaluate a model with the GPT-2 paper's protocols (docs/evals.md). "
        "'paper' runs every benchmark whose data can be had and writes report.md and "
        "report.json beside the paper's Table 3.",
    )
    p.add_argument("task", choices=[*TASKS, "paper"])
    add_model_args(p)
    p.add_argument(
        "--limit", type=count, help="only the first N passages / questions / sliding windows"
    )
    p.add_argument(
        "--context", type=count, help="window length in tokens (default: the model's context)"
    )
    p.add_argument("--stride", type=count, help="tokens between windows (default: context / 2)")
    p.add_argument("--batch-size", type=count, default=8, help="sequences per forward pass")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    p.add_argument("--data", metavar="FILE", help="the task's data file (default: looked up)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with data files in gpt2lab's layout")
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never download missing data: use the bundled sample (LAMBADA, WikiText-2) or fail",
    )
    p.add_argument(
        "--split", choices=["test", "valid"], help="default: test (CBT: valid, as the paper)"
    )
    p.add_argument(
        "--detok",
        choices=["both", "on", "off"],
        default="both",
        help="word-level corpora: de-tokenized text, the text as published, or both (default)",
    )
    p.add_argument(
        "--last-token", action="store_true", help="LAMBADA: score only the last BPE token"
    )
    p.add_argument(
        "--stop-filter",
        action="store_true",
        help="LAMBADA: predict only words that are not stop words (the paper's filter idea)",
    )
    p.add_argument(
        "--out", default="eval-report", help="paper: folder for report.md and report.json"
    )
    p.set_defaults(func=cmd_eval)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        data=args.data,
        data_dir=args.data_dir,
        download=not args.no_download,
        split=args.split,
        context=args.context,
        stride=args.stride,
        batch_size=args.batch_size,
        limit=args.limit,
        detok=args.detok,
        last_token=args.last_token,
        stop_filter=args.stop_filter,
        progress=True,
    )


def _print_table(title: str, results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "settings", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in results:
        for metric, value in r.metrics():
            table.add_row(r.task, r.describe(), metric, value)
    Console().print(table)


def cmd_eval(args: argparse.Namespace) -> None:
    # every argument is checked now, not after loading the model and hours of evaluation
    if args.json:
        prepare_output(args.json, "--json")
    if args.task == "paper":
        prepare_output(args.out, "--out", folder=True)
    if args.data and not Path(args.data).is_file():
        raise UsageError(f"--data {args.data} is not a file")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")
    settings = _settings(args)
    path = None if args.task == "paper" else task_data(args.task, settings)  # before the model
    model = load_model_arg(args)
    name = args.model or DEFAULT_MODEL  # load_model_arg names the fallback when it had to use one
    if args.task == "paper":
        from ..evals.paper import run_paper

        report = run_paper(model, name, settings)
        _print_table(f"{name} on the GPT-2 paper's benchmarks", report.results)
        for task, note in report.samples.items():
            print(f"{task}: {note}", file=sys.stderr)
        for task, why in report.skipped.items():
            print(f"not run: {task}: {why}", file=sys.stderr)
        try:
            md, js = report.write(args.out)
        except OSError as e:
            raise OutputError(f"cannot write the report into {args.out}: {reason(e)}") from None
        print(f"wrote {md} and {js}")
        payload = report.to_dict()
    else:
        assert path is not None  # found above for every task but paper
        sample = sample_note(path)
        if sample:
            print(f"{args.task}: {sample}", file=sys.stderr)
        results = run_task(model, args.task, settings, path)
        _print_table(f"{name}: {args.task}", results)
        payload = {"model": name, "data": str(path), "sample": sample}
        payload["results"] = [r.to_dict() for r in results]
    if args.json:
        # whole or not at all: an earlier file of that name stays if this fails (OutputError)
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
