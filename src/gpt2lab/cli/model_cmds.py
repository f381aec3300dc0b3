"""The commands that run or describe a model: ``generate``, ``tokenize``, ``info``, ``steps``,
``inspect`` and ``convert``. Each parses, calls the library and prints; it computes nothing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..viz import PLOT_STYLES
from .common import (
    DEFAULT_MODEL,
    add_model_args,
    at_least,
    check_prompt,
    load_model_arg,
    prepare_output,
)

if TYPE_CHECKING:
    from ..config import GPT2Config

KV_DTYPES = {"float32": 4, "bfloat16": 2}  # bytes per value of the KV cache rows of `info`


def cmd_generate(args: argparse.Namespace) -> None:
    from ..generate import SamplingSettings

    settings = SamplingSettings(args.greedy, args.temperature, args.top_k, args.top_p, args.seed)
    check_prompt(args.prompt, settings)
    model = load_model_arg(args)
    # generate_text checks the prompt against the model when called, so a refused prompt
    # is never echoed first
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
    print(args.prompt, end="", flush=True)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def cmd_tokenize(args: argparse.Namespace) -> None:
    from ..tokenizer import get_tokenizer

    tok = get_tokenizer()
    ids = tok.encode(args.text, allowed_special="all")
    tokens = [tok.id_to_token(i) for i in ids]
    traces = tok.trace(args.text, allowed_special="all") if args.trace else None
    if args.json:
        result: dict = {"ids": ids, "tokens": tokens}
        if traces is not None:
            result["trace"] = [t.to_dict() for t in traces]
        print(json.dumps(result, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if traces is not None:
        # Text(...) everywhere: a token such as "[b]" must print as itself, not as rich markup.
        for t in traces:
            what = "special token" if t.special else f"{len(t.merges)} merges"
            table = Table(title=Text(f"{t.word!r} -> {t.symbols}  ({what})"), title_justify="left")
            for col in ("step", "rank", "pair merged", "parts"):
                table.add_column(col, justify="right" if col in ("step", "rank") else "left")
            table.add_row("start", "", "", Text(" ".join(t.start)))
            for n, m in enumerate(t.merges, 1):
                table.add_row(
                    str(n), str(m.rank), Text(" + ".join(m.pair)), Text(" ".join(m.parts))
                )
            table.add_section()
            pieces = "  ".join(f"{piece}={i}" for piece, i in zip(t.pieces, t.ids))
            table.add_row("ids", "", "", Text(pieces))
            console.print(table)
        return
    table = Table(title=f"{len(ids)} tokens")
    for col in ("#", "token", "id", "bytes"):
        table.add_column(col, justify="right" if col in ("#", "id") else "left")
    for n, (i, token) in enumerate(zip(ids, tokens)):
        table.add_row(str(n), token, str(i), repr(tok.token_bytes(i)))
    console.print(table)


def _info_config(name: str, args: argparse.Namespace) -> tuple[GPT2Config, str]:
    """A preset's config, a Hugging Face folder's config.json (no weights read), or the config
    of the model ``name`` loads; and a note saying which."""
    from ..config import PRESET_NOTES, PRESETS, GPT2Config
    from ..weights import resolve
    from ..weights.hf import is_hf_folder

    if name in PRESETS and not Path(name).exists():
        return PRESETS[name], PRESET_NOTES[name]
    folder = resolve(name)
    if is_hf_folder(folder):
        return GPT2Config.from_json_file(folder / "config.json"), f"config.json of {name}"
    args.model = name
    return load_model_arg(args).config, f"loaded from {name}"


def cmd_info(args: argparse.Namespace) -> None:
    from ..config import describe, kv_cache_bytes_per_token, parameter_counts

    names = args.model or [DEFAULT_MODEL]
    infos = []
    for name in names:
        config, note = _info_config(name, args)
        kv = {dtype: kv_cache_bytes_per_token(config, size) for dtype, size in KV_DTYPES.items()}
        infos.append(
            {
                "model": name,
                "note": note,
                "config": config.to_dict(),
                "architecture": describe(config),
                "parameters": parameter_counts(config),
                "kv_cache_bytes_per_token": kv,
            }
        )
    if args.json:  # one model: its object; several: a list of them, in the order given
        print(json.dumps(infos[0] if len(infos) == 1 else infos, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="architecture, parameters by component, KV cache")
    table.add_column("")
    for info in infos:
        table.add_column(info["model"], justify="right")
    for key in infos[0]["architecture"]:
        table.add_row(key, *(str(info["architecture"][key]) for info in infos))
    table.add_section()
    table.add_row("parameters", style="bold")
    for key in infos[0]["parameters"]:
        cells = [
            "tied"
            if key == "unembedding" and info["config"]["tie_word_embeddings"]
            else f"{info['parameters'][key]:,}"
            for info in infos
        ]
        table.add_row(f"  {key}", *cells, style="bold" if key == "total" else None)
    table.add_section()
    table.add_row("KV cache, bytes/token", style="bold")
    for dtype in KV_DTYPES:
        table.add_row(f"  {dtype}", *(f"{i['kv_cache_bytes_per_token'][dtype]:,}" for i in infos))
    console = Console()
    console.print(table)
    for info in infos:
        console.print(f"{info['model']}: {info['note']}", highlight=False)


def cmd_steps(args: argparse.Namespace) -> None:
    from ..inspection import step_table
    from ..viz.terminal import render_steps

    config = None if args.model is None else _info_config(args.model, args)[0]
    steps = step_table(config, args.layer)
    if args.json:
        print(json.dumps([vars(step) for step in steps], ensure_ascii=False))
        return
    from rich.console import Console

    where = "{L} = block" if args.layer is None else f"block {args.layer}"
    sizes = "" if args.model is None else f", sizes of {args.model}"
    render_steps(steps, Console(), f"named steps in forward order ({where}{sizes})")


def cmd_inspect(args: argparse.Namespace) -> None:
    from ..generate import SamplingSettings
    from ..inspection import inspect_prompt
    from ..viz.terminal import render_inspection

    given = {
        flag: getattr(args, flag)
        for flag in ("temperature", "top_k", "top_p", "seed")
        if getattr(args, flag) is not None
    }
    sampling = SamplingSettings(**given) if args.sampling or given else None
    check_prompt(args.prompt, sampling)
    if args.html is not None:
        prepare_output(args.html, "--html")
    elif args.interactive:
        raise UsageError("--interactive adds views to the --html report; add --html PATH")
    if args.plots is not None:
        prepare_output(args.plots, "--plots", folder=True)
    elif args.style is not None:
        raise UsageError("--style sets the look of the --plots pictures; add --plots FOLDER")
    model = load_model_arg(args)
    result = inspect_prompt(
        model,
        args.prompt,
        layer=args.layer,
        head=args.head,
        step=args.step,
        top=args.top,
        target=args.target,
        sampling=sampling,
        all_heads=args.html is not None or args.plots is not None,
        model_name=args.model or DEFAULT_MODEL,
    )
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        from rich.console import Console

        render_inspection(result, Console())
    if args.html is not None:
        from ..viz.html import write_html

        path = write_html(result, args.html, interactive=args.interactive)
        # with --json, stdout holds the JSON alone
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.plots is not None:
        from ..viz.plots import save_inspection, style

        with style(args.style or "default"):
            paths = save_inspection(result, args.plots)
        names = ", ".join(path.name for path in paths)
        print(f"wrote {names} in {args.plots}", file=sys.stderr if args.json else sys.stdout)


def cmd_convert(args: argparse.Namespace) -> None:
    from ..weights import load

    prepare_output(args.dest, "dest", folder=True)
    model = load(args.source)
    folder = model.save(args.dest)
    print(f"wrote {folder} (config.json, model.safetensors, vocab.json, merges.txt)")


def add_model_parsers(sub: argparse._SubParsersAction) -> None:
    """Add generate, tokenize, info, steps, inspect and convert to ``gpt2lab``'s subparsers."""
    p = sub.add_parser("generate", help="continue a prompt, streaming the new text")
    p.add_argument("prompt")
    add_model_args(p)
    p.add_argument("--max-new-tokens", type=at_least(0), default=50)
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
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"ids": [...], "tokens": [...]} (with --trace also "trace": [...])',
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="show how BPE built each word: its bytes, every merge with its rank, then the ids",
    )
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser(
        "info",
        help="describe models side by side: architecture, parameters by component, KV cache",
    )
    p.add_argument(
        "--model",
        action="append",
        help="a preset (gpt2, gpt1, transformer-base, llama-3.1-8b, ...: no weights needed), "
        f"tiny, a model folder or a Hub id; repeat it to compare (default: {DEFAULT_MODEL})",
    )
    p.set_defaults(device=None)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per model (a list when --model is given more than once)",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("steps", help="list the named steps of the forward pass: shape, formula")
    p.add_argument(
        "--model",
        default=None,
        help="the steps of this model (a preset such as llama-3.2-1b or gpt1, tiny, a folder or "
        "a Hub id), its sizes filled in (default: GPT-2's steps, in symbols)",
    )
    p.add_argument("--layer", type=at_least(0), default=None, help="full names for this block")
    p.add_argument("--json", action="store_true", help="print a list of {name, shape, formula}")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser(
        "inspect",
        help="look inside one forward pass: tokens, next tokens, logit lens, attention, a step",
    )
    p.add_argument("prompt")
    add_model_args(p)
    p.add_argument("--layer", type=at_least(0), default=0, help="block whose attention is shown")
    p.add_argument(
        "--head", type=at_least(0), default=0, help="attention head shown (and of --step)"
    )
    p.add_argument(
        "--step", help="also show this step's values, e.g. blocks.0.hook_resid_mid (see `steps`)"
    )
    p.add_argument(
        "--top",
        type=at_least(1),
        default=5,
        help="tokens per list: next, lens, sampling (default: 5)",
    )
    p.add_argument(
        "--target",
        help="a single-token text (' park') whose rank the lens shows; 'next': each next token",
    )
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    p.add_argument(
        "--html",
        metavar="PATH",
        type=Path,
        help="also write it all as one self-contained HTML file (no network needed to open it)",
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="with --html: add the interactive views (model map, attention lines, every head)",
    )
    p.add_argument(
        "--plots",
        metavar="FOLDER",
        type=Path,
        help="also save the pictures (next tokens, logit lens, attention...) there as PNG files",
    )
    p.add_argument(
        "--style",
        choices=PLOT_STYLES,
        help="look of the --plots pictures (default: default); slides: wider, bigger fonts, "
        "thicker lines",
    )
    p.add_argument(
        "--sampling", action="store_true", help="show how the next token is sampled, stage by stage"
    )
    p.add_argument("--temperature", type=float, default=None, help="(implies --sampling)")
    p.add_argument("--top-k", type=int, default=None, help="(implies --sampling)")
    p.add_argument("--top-p", type=float, default=None, help="(implies --sampling)")
    p.add_argument("--seed", type=int, default=None, help="(implies --sampling)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "convert", help="write any loadable model as a Hugging Face folder (safetensors)"
    )
    p.add_argument("source", help="model folder or Hub id, e.g. an OpenAI checkpoint folder")
    p.add_argument("dest", help="folder to write")
    p.set_defaults(func=cmd_convert)
