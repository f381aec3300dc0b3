"""``gpt2lab spreadsheet "PROMPT" --model M --out model.xlsx``: the forward pass as formulas.

``gpt2lab.cli.build_parser`` registers it with ``add_spreadsheet_parser(subparsers)``. The
command states the workbook's size and checks Excel's limits before it writes anything.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_model_args, check_prompt, load_model_arg, prepare_output


def add_spreadsheet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``spreadsheet`` command to ``gpt2lab``'s subparsers; returns its parser."""
    p = subparsers.add_parser(
        "spreadsheet",
        help="write a workbook that computes the model on a prompt with formulas (xlsx)",
        description="Write an Excel workbook in which every named step of the forward pass is a "
        "sheet of formulas over the weights' sheets, from the typed tokens to the next token; "
        "Excel or LibreOffice recomputes it when a cell changes. The bundled 'chars' model "
        "recalculates in seconds; bigger models make big files (the size is printed first).",
    )
    p.add_argument("prompt")
    add_model_args(p)
    p.add_argument("--out", required=True, help="the .xlsx file to write")
    p.set_defaults(func=cmd_spreadsheet)
    return p


def cmd_spreadsheet(args: argparse.Namespace) -> None:
    from ..spreadsheet import write_workbook

    check_prompt(args.prompt, None)
    out = prepare_output(args.out, "--out")
    model = load_model_arg(args)

    def announce(plan) -> None:
        print(f"{out}: {plan.summary()}", flush=True)

    write_workbook(model, args.prompt, out, progress=sys.stderr.isatty(), before_writing=announce)
    print(f"wrote {out} ({out.stat().st_size / 1e6:,.1f} MB)")
