"""A training run's settings: ``TrainConfig`` (CLI flags and TOML keys use its field names) and
the learning-rate schedule that follows from them."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import GPT2Config
from ..errors import UsageError
from .data import bundled_texts

# The architecture switches of GPT2Config that a run from scratch may set (``arch``); the shape
# (n_layer, n_head, n_embd, block_size) and dropout are TrainConfig's own fields.
ARCH_SWITCHES: dict[str, type] = {
    "positions": str,
    "rope_theta": float,
    "partial_rotary_factor": float,
    "norm": str,
    "norm_position": str,
    "final_norm": bool,
    "activation": str,
    "n_inner": int,
    "n_kv_head": int,
    "qkv_bias": bool,
    "attn_out_bias": bool,
    "mlp_bias": bool,
    "tie_word_embeddings": bool,
    "layer_norm_epsilon": float,
}
_KIND_WORDS = {str: "a word", float: "a number", int: "an integer", bool: "true or false"}


def parse_arch(text: str) -> dict[str, Any]:
    """``--arch positions=rope,norm=rmsnorm,n_kv_head=2,qkv_bias=false`` -> the switches as a
    dict of typed values (an empty text: none, GPT-2's choices)."""
    arch: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in ARCH_SWITCHES:
            raise UsageError(
                f"arch: {item!r} is not NAME=VALUE with NAME one of {', '.join(ARCH_SWITCHES)}"
            )
        kind = ARCH_SWITCHES[name]
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise UsageError(f"arch: {name} must be {_KIND_WORDS[bool]}, got {value!r}")
            arch[name] = value.lower() == "true"
            continue
        try:
            arch[name] = kind(value)
        except ValueError:
            raise UsageError(f"arch: {name} must be {_KIND_WORDS[kind]}, got {value!r}") from None
    return arch


@dataclass
class TrainConfig:
    """Every setting of a run. CLI flags and TOML keys use these names (``--max-steps``).

    ``data`` is a folder written by ``gpt2lab prepare``, or the name of a text bundled with
    gpt2lab (``shakespeare``), which the run tokenizes into its own folder. ``warmup_steps``
    left as None scales with the run: min(100, max_steps // 10), so that a short run reaches its
    learning rate; a value given is kept as it is.
    """

    data: str = field(
        default="",
        metadata={
            "help": "folder written by `gpt2lab prepare`, or a text bundled with gpt2lab: "
            + ", ".join(bundled_texts())
        },
    )
    out_dir: str = "out"
    init: str = field(
        default="scratch",
        metadata={"help": "scratch (default), tiny, a Hub id such as gpt2, or a model folder"},
    )
    # model shape (from scratch only)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256  # context length trained on (= n_positions from scratch)
    arch: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "type": parse_arch,
            "help": "architecture switches of GPT2Config, from scratch only, e.g. "
            "positions=rope,norm=rmsnorm,activation=swiglu,n_kv_head=2 (default: GPT-2's)",
        },
    )
    dropout: float = 0.0
    # optimisation
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int | None = field(
        default=None,
        metadata={
            "type": int,
            "help": "steps of linear warmup (default: min(100, max_steps // 10))",
        },
    )
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 turns clipping off
    dtype: str = "auto"  # auto, float32, bfloat16, float16 (autocast)
    device: str = "auto"
    seed: int = 1337
    # evaluation, samples, checkpoints
    eval_interval: int = 100
    eval_batches: int = 20
    sample_prompt: str = "Once upon a time"
    sample_tokens: int = 40
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2

    def validate(self) -> None:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "grad_accum",
            "max_steps",
            "eval_interval",
            "eval_batches",
            "checkpoint_interval",
            "keep_checkpoints",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.data:
            raise UsageError("no training data: pass --data DIR (made by `gpt2lab prepare`)")
        if not 0 < self.lr < math.inf or not 0 <= self.min_lr <= self.lr:
            raise UsageError(f"need 0 <= min_lr <= lr and lr > 0, got {self.min_lr}, {self.lr}")
        at_least_zero = ("warmup_steps", "sample_tokens", "weight_decay", "grad_clip")
        for name in at_least_zero:
            value = getattr(self, name)
            if value is None:  # (warmup_steps: scales with max_steps)
                continue
            if not 0 <= value < math.inf:  # (also refuses NaN)
                raise UsageError(f"{name} must be >= 0, got {value}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UsageError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype}")
        self.validate_arch()

    def validate_arch(self) -> None:
        """The switches name GPT2Config fields with values of their kind, and apply only to a
        model from scratch (a pretrained one brings its own)."""
        if not self.arch:
            return
        if self.init != "scratch":
            raise UsageError(
                f"arch applies to a model from scratch; --init {self.init} brings its own"
            )
        for name, value in self.arch.items():
            kind = ARCH_SWITCHES.get(name)
            if kind is None:
                raise UsageError(
                    f"arch: unknown switch {name!r}; one of {', '.join(ARCH_SWITCHES)}"
                )
            # (TOML gives ints where floats are meant: rope_theta = 10000)
            fits = isinstance(value, kind) or (kind is float and type(value) is int)
            if not fits or (kind is int and isinstance(value, bool)):
                raise UsageError(f"arch: {name} must be {_KIND_WORDS[kind]}, got {value!r}")
        self.model_config(vocab_size=1)  # GPT2Config checks the combination, in one line

    def model_config(self, vocab_size: int) -> GPT2Config:
        """The config of a model from scratch: the run's shape and dropout, with its switches."""
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=self.block_size,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            dropout=self.dropout,
            **self.arch,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UsageError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read training config {path}: {e}") from None
        return cls.from_dict(values)


def warmup_steps(cfg: TrainConfig) -> int:
    """The run's warmup: as given, or min(100, max_steps // 10) so a short run is not all warmup."""
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return min(100, cfg.max_steps // 10)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over the warmup steps, then cosine decay to ``min_lr``."""
    warmup = warmup_steps(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.max_steps - warmup)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (cfg.lr - cfg.min_lr)
