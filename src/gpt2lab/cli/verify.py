"""``gpt2lab verify PATH``: check a model folder against GPT-2 124M's published checksums.

``gpt2lab.cli.build_parser`` registers it with ``add_verify_parser(subparsers)``. Exit status: 0
when every tensor matches, 1 when any mismatches or is missing (or the files cannot be read), 2
for usage errors, the same mapping as every other command (GPT2LabError.exit_code).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    from ..weights.verify import VerifyReport

_STYLES = {"ok": "green", "mismatch": "red", "missing": "red", "bad-shape": "red"}


class VerifyFailed(CheckpointError):
    """The folder was read, and some tensors differ from the published GPT-2 124M."""


def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``verify`` command to ``gpt2lab``'s subparsers; returns its parser."""
    p = subparsers.add_parser(
        "verify",
        help="check a GPT-2 124M folder tensor by tensor against the published checksums",
        description="Read every tensor of a model folder (Hugging Face safetensors or "
        "pytorch_model.bin, or OpenAI's TensorFlow checkpoint), check its shape, that it is "
        "finite, and the sha256 of its float32 bytes against GPT-2 124M as released. "
        "Exit status 0: all match; 1: something differs or cannot be read; 2: usage error.",
    )
    p.add_argument("path", help="model folder (or a training run folder: its latest checkpoint)")
    p.add_argument(
        "--json", action="store_true", help="print the report as one JSON object (rows included)"
    )
    p.add_argument("--all", action="store_true", help="list every tensor, not only those that fail")
    p.set_defaults(func=cmd_verify)
    return p


def cmd_verify(args: argparse.Namespace) -> None:
    from ..weights.verify import verify

    report = verify(args.path)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report, show_all=args.all)
    if not report.ok:
        # Raised, not sys.exit: gpt2lab.cli.main prints it as one line and returns its exit
        # code (1).
        raise VerifyFailed(report.summary)


def _print_report(report: VerifyReport, *, show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    rows = report.rows if show_all else report.failed
    if rows:
        shown = len(rows) if show_all else f"{len(rows)} of {len(report.rows)}"
        # Text, not a str: a path such as "runs/[old]" must not be read as rich markup.
        table = Table(title=Text(f"{report.path} ({report.format}): {shown} tensors"))
        # Names and statuses never wrap (they are what one greps for); the rest gives way.
        for col in ("tensor", "status", "shape"):
            table.add_column(col, no_wrap=True)
        table.add_column("sha256", overflow="ellipsis", max_width=12)
        table.add_column("detail", overflow="fold")
        for row in rows:
            shape = "-" if row.shape is None else "x".join(map(str, row.shape))
            table.add_row(
                Text(row.name),
                Text(row.status, style=_STYLES.get(row.status, "yellow")),
                shape,
                row.sha256 or "",
                Text(row.detail),
            )
        console.print(table)
    counts = report.counts()
    line = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(Text(f"{report.path}: {line}", style="bold"))
    for problem in report.problems:
        console.print(Text(problem, style="red"))
    if report.ok:  # otherwise the summary is the error line cli.main prints on stderr
        console.print(Text(report.summary, style="green"))
