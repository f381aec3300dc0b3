"""``gpt2lab sae``: train a sparse autoencoder on a step's activations, measure it, look at its
features and steer the model with one.

    gpt2lab sae train --model tiny --data stories --step blocks.2.hook_resid_pre --out-dir run
    gpt2lab sae eval --sae run --data stories
    gpt2lab sae features --sae tiny-sae --prompt "The dog barked"
    gpt2lab sae feature 123 --sae tiny-sae --data stories --html feature.html
    gpt2lab sae steer 123 --sae tiny-sae --strength 8 --prompt "Once upon a time"
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .common import at_least, check_prompt, prepare_output

if TYPE_CHECKING:
    from ..model import GPT2
    from ..sae import SAE

# TransformerLens's names of the models community SAEs were trained on -> gpt2lab's.
_MODEL_NAMES = {"gpt2-small": "gpt2", "gpt2": "gpt2", "tiny": "tiny"}
_TRAIN_FIELDS: set[str] = set()


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


_finite.__name__ = "float"


def _open_sae_and_model(args: argparse.Namespace) -> tuple[SAE, GPT2]:
    """``--sae`` and the feature index (checked first: they are cheap), then ``--model``
    (default: the model the SAE names)."""
    from ..errors import check_index
    from ..sae import load_sae
    from ..sae.autoencoder import check_model
    from ..weights import load

    sae = load_sae(args.sae)
    if getattr(args, "feature", None) is not None:
        check_index("feature", args.feature, sae.cfg.d_sae)
    name = args.model or _MODEL_NAMES.get(sae.cfg.model_name, sae.cfg.model_name) or "tiny"
    model = load(name, device=args.device)
    check_model(model, sae)
    return sae.to(model.device), model


def _open_tokens(data: str, split: str):
    from ..train.data import TokenData

    tokens = getattr(TokenData.open(data), split)
    if len(tokens) == 0:
        raise UsageError(f"--data {data}: its {split} split is empty; use --split train")
    return tokens


# --- commands ---------------------------------------------------------------------------------
def cmd_sae_train(args: argparse.Namespace) -> None:
    from ..sae import SAETrainConfig, train_sae
    from ..train.checkpoints import latest_checkpoint, load_training_state

    given = {k: v for k, v in vars(args).items() if k in _TRAIN_FIELDS and v is not None}
    values: dict = {}
    if args.resume:
        ckpt = latest_checkpoint(Path(given.get("out_dir", SAETrainConfig.out_dir)))
        if ckpt is not None:
            values = load_training_state(ckpt)["train_config"]
    cfg = SAETrainConfig.from_dict({**values, **given})
    cfg.validate()
    if not args.resume:
        prepare_output(cfg.out_dir, "--out-dir", folder=True)
    final, metrics = train_sae(cfg, resume=args.resume)
    if metrics is not None:
        print(metrics.summary())
    print(f"SAE: {final}  (use it with --sae {cfg.out_dir}, or gpt2lab.sae.load_sae)")


def cmd_sae_eval(args: argparse.Namespace) -> None:
    from ..sae import evaluate_sae

    tokens = _open_tokens(args.data, args.split)
    sae, model = _open_sae_and_model(args)
    metrics = evaluate_sae(
        model, sae, tokens, context=args.context, batch_size=16, max_batches=args.batches
    )
    print(metrics.summary())


def cmd_sae_features(args: argparse.Namespace) -> None:
    from ..sae import active_features

    check_prompt(args.prompt, None)
    sae, model = _open_sae_and_model(args)
    for token, features in active_features(model, sae, args.prompt, args.top):
        listed = ", ".join(f"{i} ({v:.2f})" for i, v in features) or "-"
        print(f"{token!r:>16}  {listed}")


def cmd_sae_feature(args: argparse.Namespace) -> None:
    from ..sae import feature_report

    if args.html:
        prepare_output(args.html, "--html")
    tokens = _open_tokens(args.data, args.split)
    sae, model = _open_sae_and_model(args)
    report = feature_report(
        model, sae, tokens, args.feature, n_contexts=args.contexts, max_tokens=args.max_tokens
    )
    print(
        f"feature {report.feature} of {report.hook_name}: fires on "
        f"{report.fraction_active:.3%} of {report.tokens_read:,} tokens, max "
        f"{report.max_activation:.3f}"
    )
    for c in report.contexts:
        text = "".join(f"[[{t}]]" if i == c.at else t for i, t in enumerate(c.tokens))
        print(f"  {c.peak:7.3f}  {text!r}")
    if report.promoted:
        print("promotes:   " + " ".join(repr(t.token) for t in report.promoted))
        print("suppresses: " + " ".join(repr(t.token) for t in report.suppressed))
    if args.html:
        print(f"wrote {report.write_html(args.html)}")


def cmd_sae_steer(args: argparse.Namespace) -> None:
    from ..sae import steer

    check_prompt(args.prompt, None)
    sae, model = _open_sae_and_model(args)
    edit = steer(sae, args.feature, args.strength, mode=args.mode)
    options = {"top_k": args.top_k, "seed": args.seed, "temperature": args.temperature}
    plain = model.generate_text(args.prompt, args.max_new_tokens, **options)
    steered = model.generate_text(args.prompt, args.max_new_tokens, edits=[edit], **options)
    print(f"--- unsteered\n{args.prompt}{plain}")
    print(f"--- feature {args.feature}, {args.mode} {args.strength:g}\n{args.prompt}{steered}")


# --- the parser -------------------------------------------------------------------------------
def _add_sae_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sae",
        default="tiny-sae",
        help="tiny-sae (bundled, for tiny), an `sae train` run, or SAE Lens's folder "
        "(cfg.json + sae_weights.safetensors)",
    )
    p.add_argument("--model", default=None, help="the model (default: the one the SAE names)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder written by `gpt2lab prepare`")
    p.add_argument("--split", choices=("val", "train"), default="val", help="(default: val)")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per SAETrainConfig field, default None (so --resume can tell what was given)."""
    from ..sae import SAETrainConfig

    for f in dataclasses.fields(SAETrainConfig):
        _TRAIN_FIELDS.add(f.name)
        kind = type(f.default)
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=_finite if kind is float else kind,
            default=None,
            help=f.metadata.get("help", f"(default: {f.default!r})"),
        )


def add_sae_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``gpt2lab sae`` and its commands."""
    sae = sub.add_parser("sae", help="sparse autoencoders: train, measure, browse, steer")
    cmds = sae.add_subparsers(dest="sae_command", required=True, metavar="SAE_COMMAND")

    p = cmds.add_parser("train", help="train an SAE on a step's activations")
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir")
    _add_train_flags(p)
    p.set_defaults(func=cmd_sae_train)

    p = cmds.add_parser("eval", help="variance explained, L0, dead features, spliced loss")
    _add_sae_args(p)
    _add_data_args(p)
    p.add_argument("--context", type=at_least(2), default=128, help="tokens per window")
    p.add_argument("--batches", type=at_least(1), default=8, help="batches of 16 windows")
    p.set_defaults(func=cmd_sae_eval)

    p = cmds.add_parser("features", help="the features firing on each token of a prompt")
    _add_sae_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--top", type=at_least(1), default=5, help="features per token")
    p.set_defaults(func=cmd_sae_features)

    p = cmds.add_parser("feature", help="one feature: top contexts, promoted tokens, dashboard")
    p.add_argument("feature", type=at_least(0), help="the feature's index")
    _add_sae_args(p)
    _add_data_args(p)
    p.add_argument("--contexts", type=at_least(1), default=10, help="top contexts shown")
    p.add_argument("--max-tokens", type=at_least(1), default=65_536, help="tokens read")
    p.add_argument("--html", help="write the dashboard to this self-contained HTML file")
    p.set_defaults(func=cmd_sae_feature)

    p = cmds.add_parser("steer", help="generate with a feature turned up (Golden Gate style)")
    p.add_argument("feature", type=at_least(0), help="the feature's index")
    _add_sae_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--strength", type=_finite, required=True, help="how far to turn it up")
    p.add_argument(
        "--mode",
        choices=("add", "clamp"),
        default="add",
        help="add strength x the direction, or clamp the feature's activation to strength",
    )
    p.add_argument("--max-new-tokens", type=at_least(0), default=40)
    p.add_argument("--top-k", type=at_least(1), default=40)
    p.add_argument("--temperature", type=_finite, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sae_steer)
