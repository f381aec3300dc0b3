"""`gpt2lab <command>`: parses arguments, calls the library, prints. Computes nothing itself."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GPT2LabError, OutputError, UsageError
from .viz import PLOT_STYLES

if TYPE_CHECKING:
    from .generate import SamplingSettings
    from .model import GPT2

DEFAULT_MODEL = "gpt2"  # the real 124M model; offline and not cached: the bundled "tiny"
FALLBACK_MODEL = "tiny"


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``, refused at parse time, before any model loads."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def prepare_output(path: str | Path, flag: str, *, folder: bool = False) -> Path:
    """Check an output path before any work: the one rule every command follows.

    ``folder``: the command writes a folder there (and creates it), else a file. The folder
    that holds it must exist. Missing folders above it are created only inside the current
    folder, saying so on stderr; anywhere else they are refused, so a typo in an absolute path
    does not scatter new folders across the disk.
    """
    path = Path(path).expanduser()
    if folder and path.is_file():
        raise UsageError(f"{flag} {path} is a file; give a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    parent = path.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing == parent:
        return path
    if not parent.resolve().is_relative_to(Path.cwd().resolve()):
        raise UsageError(
            f"{flag} {path}: folder {parent} does not exist; create it first (gpt2lab creates "
            "missing folders only inside the current one)"
        )
    try:
        parent.mkdir(parents=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {parent}: {e.strerror or e}") from None
    print(f"gpt2lab: created folder {parent} for {flag}", file=sys.stderr)
    return path


def check_prompt(prompt: str, sampling: SamplingSettings | None) -> None:
    """A prompt and sampling settings, checked before loading a model. What needs the model
    (top-k above its vocabulary, a prompt longer than its context) is checked once it is
    loaded, still before anything is printed."""
    from .prompts import EMPTY_PROMPT

    if prompt == "":
        raise UsageError(EMPTY_PROMPT)
    if sampling is not None:
        sampling.validate()


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model and --device, as every command that runs a model takes them."""
    p.add_argument(
        "--model",
        default=None,
        help="tiny (bundled), a model folder (Hugging Face, OpenAI checkpoint, training run) or "
        f"a Hub id (default: {DEFAULT_MODEL}, or {FALLBACK_MODEL} when that cannot be had)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda (default: cpu); on a GPU, generation replays one "
        "recorded CUDA graph per token",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="weights and activations (default: float32); bfloat16 is faster on CPUs with "
        "AVX-512 BF16 or AMX (docs/benchmarks.md measures it)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="int8 weights, one scale per output channel: faster decoding on a CPU",
    )


DTYPES = ("float32", "bfloat16", "float16")


def _device(name: str | None) -> str | None:
    """``--device`` checked: a device torch knows, and one this machine has."""
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--device {name!r}: {str(e).splitlines()[0]}") from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise UsageError(f"--device {name}: this machine has no such CUDA device")
    return name


def load_model_arg(args: argparse.Namespace) -> GPT2:
    """The model ``--model`` names; with none, gpt2, or the bundled tiny (saying so) offline."""
    import torch

    from .errors import ModelNotFoundError
    from .weights import load

    dtype = getattr(args, "dtype", None)
    options = {
        "device": _device(args.device),
        "dtype": getattr(torch, dtype) if dtype else None,
        "quantize": getattr(args, "quantize", None),
    }
    if args.model is not None:
        return load(args.model, **options)
    try:
        return load(DEFAULT_MODEL, **options)
    except ModelNotFoundError as e:
        print(
            f"gpt2lab: {DEFAULT_MODEL} is not available ({e}).\n"
            f"gpt2lab: using the bundled model '{FALLBACK_MODEL}', a small GPT-2 trained on "
            f"children's stories (see `gpt2lab info --model {FALLBACK_MODEL}`)",
            file=sys.stderr,
        )
        args.model = FALLBACK_MODEL
        return load(FALLBACK_MODEL, **options)


# --- commands ---------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    from .generate import SamplingSettings

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
    from .tokenizer import get_tokenizer

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


def cmd_info(args: argparse.Namespace) -> None:
    model = load_model_arg(args)
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


def cmd_steps(args: argparse.Namespace) -> None:
    from .inspect_view import render_steps, step_table

    config = None
    if args.model is not None:
        from .weights import load

        config = load(args.model).config
    steps = step_table(config, args.layer)
    if args.json:
        print(json.dumps([vars(step) for step in steps], ensure_ascii=False))
        return
    from rich.console import Console

    where = "{L} = block" if args.layer is None else f"block {args.layer}"
    sizes = "" if args.model is None else f", sizes of {args.model}"
    render_steps(steps, Console(), f"named steps in forward order ({where}{sizes})")


def cmd_inspect(args: argparse.Namespace) -> None:
    from .generate import SamplingSettings
    from .inspect_view import inspect_prompt, render_inspection

    given = {
        flag: getattr(args, flag)
        for flag in ("temperature", "top_k", "top_p", "seed")
        if getattr(args, flag) is not None
    }
    sampling = SamplingSettings(**given) if args.sampling or given else None
    check_prompt(args.prompt, sampling)
    if args.html is not None:
        prepare_output(args.html, "--html")
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
        from .viz.html import write_html

        path = write_html(result, args.html)
        # with --json, stdout holds the JSON alone
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.plots is not None:
        from .viz.plots import save_inspection, style

        with style(args.style or "default"):
            paths = save_inspection(result, args.plots)
        names = ", ".join(path.name for path in paths)
        print(f"wrote {names} in {args.plots}", file=sys.stderr if args.json else sys.stdout)


def cmd_convert(args: argparse.Namespace) -> None:
    from .weights import load

    prepare_output(args.dest, "dest", folder=True)
    model = load(args.source)
    folder = model.save(args.dest)
    print(f"wrote {folder} (config.json, model.safetensors, vocab.json, merges.txt)")


def cmd_prepare(args: argparse.Namespace) -> None:
    from .tokenizer import Tokenizer
    from .train.data import prepare

    prepare_output(args.out, "--out", folder=True)
    tokenizer = Tokenizer.from_folder(args.tokenizer) if args.tokenizer != "gpt2" else None
    meta = prepare(
        args.files,
        args.out,
        tokenizer=tokenizer,
        tokenizer_name=args.tokenizer,
        separator=_unescape(args.separator),
        val_fraction=args.val_fraction,
        train_only=args.train_only,
    )
    print(
        f"wrote {args.out}: {meta['train_tokens']:,} training and {meta['val_tokens']:,} "
        f"held-out tokens ({meta['train_documents']:,} + {meta['val_documents']:,} documents)"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from .train.trainer import TrainConfig, latest_checkpoint, load_training_state, train

    given = {k: v for k, v in vars(args).items() if k in _TRAIN_FIELDS and v is not None}
    values: dict = {}
    if args.resume:
        ckpt = latest_checkpoint(Path(given.get("out_dir", TrainConfig.out_dir)))
        if ckpt is not None:
            values = load_training_state(ckpt)["train_config"]
    elif args.config:
        values = vars(TrainConfig.from_toml(args.config))
    cfg = TrainConfig.from_dict({**values, **given})
    if not args.resume:  # (resuming needs the folder as it is; train says if it is missing)
        prepare_output(cfg.out_dir, "--out-dir", folder=True)
    final = train(cfg, resume=args.resume)
    print(f"checkpoint: {final}  (load it with gpt2lab.load or --model {final})")


def _unescape(text: str) -> str:
    """``--separator '\\n\\n'`` as two newlines; other characters pass unchanged."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise UsageError(f"--separator {text!r}: bad escape ({e.reason})") from None


def cmd_train_tokenizer(args: argparse.Namespace) -> None:
    from .tokenizer import FILE_PAIRS
    from .train.bpe_train import train_tokenizer

    prepare_output(args.out, "--out", folder=True)  # before the training, not after
    texts = []
    for path in args.files:
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {path}: {e}") from None
    tokenizer = train_tokenizer(texts, args.vocab_size, progress=True)
    tokenizer.save(args.out, FILE_PAIRS[0])
    print(f"wrote {args.out}/encoder.json and vocab.bpe ({tokenizer.vocab_size:,} tokens)")


_TRAIN_FIELDS: set[str] = set()


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from .train.trainer import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        _TRAIN_FIELDS.add(field.name)
        kind = field.metadata.get("type", type(field.default))
        p.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None,
            help=field.metadata.get("help", f"(default: {field.default!r})"),
        )


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2lab", description="GPT-2 from scratch: load, generate, look inside."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("info", help="print a model's config and parameter counts by component")
    add_model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("steps", help="list the named steps of the forward pass: shape, formula")
    p.add_argument(
        "--model", default=None, help="fill in this model's sizes (default: symbols, no model)"
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

    p = sub.add_parser("prepare", help="tokenize text files into train/val token files")
    p.add_argument("files", nargs="+", help="UTF-8 text files")
    p.add_argument("--out", required=True, help="folder to write train.bin, val.bin, meta.json")
    p.add_argument("--tokenizer", default="gpt2", help="gpt2 (default) or a tokenizer folder")
    p.add_argument(
        "--separator",
        default="<|endoftext|>",
        help=r"text between documents (default: <|endoftext|>; '\n\n' for blank lines)",
    )
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of documents held out")
    p.add_argument("--train-only", nargs="*", default=(), help="extra files used for training only")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train-tokenizer", help="learn a byte-level BPE vocabulary (GPT-2 style)")
    p.add_argument("files", nargs="+", help="UTF-8 text files")
    p.add_argument("--vocab-size", type=int, required=True, help="ids in all, >= 257")
    p.add_argument("--out", required=True, help="folder to write encoder.json + vocab.bpe")
    p.set_defaults(func=cmd_train_tokenizer)

    p = sub.add_parser("train", help="train or fine-tune a GPT-2 (also under torchrun)")
    p.add_argument("--config", help="TOML file of settings; flags override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)

    from .evals.cli import add_eval_parser
    from .web.cli import add_serve_parser
    from .weights.verify_cli import add_verify_parser

    add_eval_parser(sub)
    add_serve_parser(sub)
    add_verify_parser(sub)
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
