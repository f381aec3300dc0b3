"""`gpt2lab <command>`: parses arguments, calls the library, prints. Computes nothing itself."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import GPT2LabError

DEFAULT_MODEL = "gpt2"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model folder (Hugging Face or OpenAI TF checkpoint) or Hub id (default: %(default)s)",
    )
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")


def _load(args: argparse.Namespace):
    from .weights import load

    return load(args.model, device=args.device)


# --- commands ---------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    model = _load(args)
    print(args.prompt, end="", flush=True)
    pieces = model.generate_text(
        args.prompt,
        args.max_new_tokens,
        greedy=args.greedy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        truncate=args.truncate,
        stream=True,
    )
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def cmd_tokenize(args: argparse.Namespace) -> None:
    from .tokenizer import get_tokenizer

    tok = get_tokenizer()
    ids = tok.encode(args.text, allowed_special="all")
    tokens = [tok.id_to_token(i) for i in ids]
    if args.json:
        print(json.dumps({"ids": ids, "tokens": tokens}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(ids)} tokens")
    for col in ("#", "token", "id", "bytes"):
        table.add_column(col, justify="right" if col in ("#", "id") else "left")
    for n, (i, token) in enumerate(zip(ids, tokens)):
        table.add_row(str(n), token, str(i), repr(tok.token_bytes(i)))
    Console().print(table)


def cmd_info(args: argparse.Namespace) -> None:
    model = _load(args)
    rows = model.parameter_counts()
    if args.json:
        print(json.dumps({"model": args.model, "config": vars(model.config), "parameters": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    config_table = Table(title=f"config of {args.model}")
    config_table.add_column("setting")
    config_table.add_column("value", justify="right")
    for key, value in vars(model.config).items():
        config_table.add_row(key, str(value))
    console.print(config_table)
    params = Table(title="parameters by component")
    for col in ("component", "parameters", "share"):
        params.add_column(col, justify="left" if col == "component" else "right")
    total = rows["total"]
    for name, count in rows.items():
        params.add_row(name, f"{count:,}", f"{100 * count / total:.1f}%")
    console.print(params)


def cmd_convert(args: argparse.Namespace) -> None:
    from .weights import load

    model = load(args.source)
    folder = model.save(args.dest)
    print(f"wrote {folder} (config.json, model.safetensors, vocab.json, merges.txt)")


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2lab", description="GPT-2 from scratch: load, generate, look inside."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="continue a prompt, streaming the new text")
    p.add_argument("prompt")
    _add_model(p)
    p.add_argument("--max-new-tokens", type=_positive_int, default=50)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument(
        "--truncate",
        choices=["left"],
        default=None,
        help="drop the start of a prompt that does not fit the context",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("tokenize", help="show each token of a text, its id and its bytes")
    p.add_argument("text")
    p.add_argument("--json", action="store_true", help='print {"ids": [...], "tokens": [...]}')
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("info", help="print a model's config and parameter counts by component")
    _add_model(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "convert", help="write any loadable model as a Hugging Face folder (safetensors)"
    )
    p.add_argument("source", help="model folder or Hub id, e.g. an OpenAI checkpoint folder")
    p.add_argument("dest", help="folder to write")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
