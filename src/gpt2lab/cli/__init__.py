"""`gpt2lab <command>`: parses arguments, calls the library, prints. Computes nothing itself.

One module per family of commands (``model_cmds``, ``train``, ``evals``, ``sae``, ``serve``,
``verify``), each adding its commands to the parser built here; ``common`` holds what they share
(the model arguments, output paths). Nothing in the library imports this package: it sits on top.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import GPT2LabError
from .evals import add_eval_parser
from .model_cmds import add_model_parsers
from .sae import add_sae_parsers
from .serve import add_serve_parser
from .spreadsheet import add_spreadsheet_parser
from .train import add_train_parsers
from .verify import add_verify_parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``gpt2lab`` parser: every command, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="gpt2lab", description="GPT-2 from scratch: load, generate, look inside."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_model_parsers(sub)
    add_train_parsers(sub)
    add_eval_parser(sub)
    add_sae_parsers(sub)
    add_serve_parser(sub)
    add_verify_parser(sub)
    add_spreadsheet_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status: 0, or a GPT2LabError's ``exit_code`` after
    one ``gpt2lab: error:`` line on stderr, or 130 on Ctrl-C. Bad arguments exit 2 in argparse."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GPT2LabError as e:
        print(f"gpt2lab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ngpt2lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
