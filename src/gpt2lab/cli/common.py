"""What every command shares: the model arguments and how they are checked and loaded, the
output-path rule, the prompt check and an integer type with a floor.

The command modules beside it import from here; the library never does (the CLI sits on top).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelNotFoundError, OutputError, UsageError

if TYPE_CHECKING:
    from ..generate import SamplingSettings
    from ..model import GPT2

DEFAULT_MODEL = "gpt2"  # the real 124M model; offline and not cached: the bundled "tiny"
FALLBACK_MODEL = "tiny"
DTYPES = ("float32", "bfloat16", "float16")  # --dtype choices, as torch names them


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
    from ..prompts import EMPTY_PROMPT

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

    from ..weights import load

    dtype = getattr(args, "dtype", None)
    options: dict[str, Any] = {
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
