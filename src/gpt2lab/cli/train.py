"""The training commands: ``prepare`` (text to token files), ``train-tokenizer`` and ``train``
(also run under torchrun as ``python -m gpt2lab.cli train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..tokenizer import ENDOFTEXT
from .common import prepare_output


def cmd_prepare(args: argparse.Namespace) -> None:
    from ..tokenizer import Tokenizer
    from ..train.data import prepare

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
    from ..train.trainer import TrainConfig, latest_checkpoint, load_training_state, train

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
    from ..tokenizer import FILE_PAIRS
    from ..train.bpe_train import train_tokenizer

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
    """One flag per TrainConfig field (``--out-dir`` for ``out_dir``), default None so that
    cmd_train can tell a given flag from the config file's value; records the names."""
    import dataclasses

    from ..train.trainer import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        _TRAIN_FIELDS.add(field.name)
        kind = field.metadata.get("type", type(field.default))
        p.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None,
            help=field.metadata.get("help", f"(default: {field.default!r})"),
        )


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """Add prepare, train-tokenizer and train to ``gpt2lab``'s subparsers."""
    p = sub.add_parser("prepare", help="tokenize text files into train/val token files")
    p.add_argument("files", nargs="+", help="UTF-8 text files")
    p.add_argument("--out", required=True, help="folder to write train.bin, val.bin, meta.json")
    p.add_argument("--tokenizer", default="gpt2", help="gpt2 (default) or a tokenizer folder")
    p.add_argument(
        "--separator",
        default=ENDOFTEXT,
        help=rf"text between documents (default: {ENDOFTEXT}; '\n\n' for blank lines)",
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
