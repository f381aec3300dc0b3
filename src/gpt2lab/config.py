"""GPT2Config: the handful of numbers that define a GPT-2 model, and the four OpenAI presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UsageError

EOT_TOKEN_ID = 50256


@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model. Defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257  # byte-level BPE: 256 bytes + 50,000 merges + <|endoftext|>
    n_positions: int = 1024  # context length: number of learned position embeddings
    n_embd: int = 768  # width of the residual stream (d_model)
    n_layer: int = 12  # number of transformer blocks
    n_head: int = 12  # attention heads per block; head size = n_embd // n_head
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # only used when training; GPT-2 itself used 0.1

    def __post_init__(self) -> None:
        for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise UsageError(f"config: {field} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise UsageError(
                f"config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"config: dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes: Any) -> GPT2Config:
        return dataclasses.replace(self, **changes)

    # --- Hugging Face config.json -------------------------------------------------------------
    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json that `transformers.GPT2LMHeadModel.from_pretrained` reads."""
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "resid_pdrop": self.dropout,
            "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout,
            "initializer_range": 0.02,
            "scale_attn_weights": True,
            "tie_word_embeddings": True,
            "bos_token_id": EOT_TOKEN_ID,
            "eos_token_id": EOT_TOKEN_ID,
        }

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> GPT2Config:
        """Read a Hugging Face GPT-2 config.json and refuse what GPT-2 does not have."""
        if d.get("model_type", "gpt2") != "gpt2":
            raise CheckpointError(f"config.json is for model_type {d['model_type']!r}, not 'gpt2'")
        n_embd = d.get("n_embd", 768)
        unsupported = {
            "activation_function": (d.get("activation_function", "gelu_new"), {"gelu_new"}),
            "n_inner": (d.get("n_inner"), {None, 4 * n_embd}),
            "scale_attn_weights": (d.get("scale_attn_weights", True), {True}),
            "scale_attn_by_inverse_layer_idx": (
                d.get("scale_attn_by_inverse_layer_idx", False),
                {False},
            ),
            "reorder_and_upcast_attn": (d.get("reorder_and_upcast_attn", False), {False}),
            "add_cross_attention": (d.get("add_cross_attention", False), {False}),
            "tie_word_embeddings": (d.get("tie_word_embeddings", True), {True}),
        }
        for key, (value, allowed) in unsupported.items():
            if value not in allowed:
                raise CheckpointError(
                    f"config.json sets {key}={value!r}; gpt2lab implements GPT-2 as published "
                    f"({key} in {sorted(map(repr, allowed))})"
                )
        try:
            return cls(
                vocab_size=d.get("vocab_size", 50257),
                n_positions=d.get("n_positions", d.get("n_ctx", 1024)),
                n_embd=n_embd,
                n_layer=d.get("n_layer", 12),
                n_head=d.get("n_head", 12),
                layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
            )
        except UsageError as e:
            raise CheckpointError(f"config.json: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> GPT2Config:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read {path}: {e}") from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{path} is not a JSON object")
        return cls.from_hf_dict(d)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_hf_dict(), indent=2) + "\n", encoding="utf-8")


PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(n_embd=768, n_layer=12, n_head=12),  # 124M
    "gpt2-medium": GPT2Config(n_embd=1024, n_layer=24, n_head=16),  # 355M
    "gpt2-large": GPT2Config(n_embd=1280, n_layer=36, n_head=20),  # 774M
    "gpt2-xl": GPT2Config(n_embd=1600, n_layer=48, n_head=25),  # 1558M
}


def preset(name: str) -> GPT2Config:
    """The config of an OpenAI GPT-2 size by its Hugging Face name (gpt2, gpt2-medium, ...)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
