"""GPT2Config: the numbers and switches that define a model, the known architectures as presets,
and their parameter counts, worked out from the config alone.

The defaults are GPT-2 small (124M) and every switch defaults to what GPT-2 does, so a config that
sets none of them is GPT-2 exactly. The switches are the changes made to the decoder since then
(and before: GPT-1 and the original Transformer):

============================  =========================  ===================================
switch                        GPT-2 (default)            the others
============================  =========================  ===================================
``positions``                 ``learned`` (W_P added)    ``sinusoidal``, ``rope``
``norm``, ``norm_position``   ``layernorm``, ``pre``     ``rmsnorm``; ``post`` (GPT-1)
``activation``, ``n_inner``   ``gelu_tanh``, 4·n_embd    ``gelu``, ``relu``, ``swiglu``
``n_kv_head``                 = n_head                   a divisor of n_head (GQA; 1 = MQA)
``qkv_bias`` ...              biases everywhere          off (LLaMA), q/k/v only (Qwen2)
``tie_word_embeddings``       output = W_Eᵀ              a separate output matrix
``final_norm``                ln_f before the output     none (post-norm models)
============================  =========================  ===================================

``from_hf_dict``/``to_hf_dict`` read and write the config.json of four Hugging Face model types
(``gpt2``, ``openai-gpt``, ``llama``, ``qwen2``); a mix that none of them describes is written
as ``model_type: gpt2lab`` with every switch spelled out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import CheckpointError, UsageError

EOT_TOKEN_ID = 50256

Positions = Literal["learned", "sinusoidal", "rope"]
Norm = Literal["layernorm", "rmsnorm"]
NormPosition = Literal["pre", "post"]
Activation = Literal["gelu_tanh", "gelu", "relu", "swiglu"]
CHOICES: dict[str, tuple[str, ...]] = {
    "positions": ("learned", "sinusoidal", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "norm_position": ("pre", "post"),
    "activation": ("gelu_tanh", "gelu", "relu", "swiglu"),
}
BIASES = ("qkv_bias", "attn_out_bias", "mlp_bias")


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3's RoPE scaling (``rope_type: llama3``): long wavelengths slowed down by ``factor``.

    With wavelength λ = 2π/θ_i and L = ``original_max_position_embeddings``: θ_i is kept where
    λ < L/high_freq_factor, divided by ``factor`` where λ > L/low_freq_factor, and blended
    linearly in between, so a model trained on L tokens reads factor·L.
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int
    rope_type: Literal["llama3"] = "llama3"

    def __post_init__(self) -> None:
        if self.rope_type != "llama3":
            raise UsageError(
                f"config: rope scaling {self.rope_type!r} is not supported; gpt2lab has "
                "Llama 3's ('llama3')"
            )
        if not 0 < self.low_freq_factor < self.high_freq_factor or self.factor <= 0:
            raise UsageError(
                "config: rope_scaling needs factor > 0 and 0 < low_freq_factor < "
                f"high_freq_factor, got {self.factor}, {self.low_freq_factor}, "
                f"{self.high_freq_factor}"
            )
        _check_positive_int("rope_scaling.original_max_position_embeddings", self)

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "low_freq_factor": self.low_freq_factor,
            "high_freq_factor": self.high_freq_factor,
            "original_max_position_embeddings": self.original_max_position_embeddings,
            "rope_type": self.rope_type,
        }


def _check_positive_int(name: str, obj: object) -> None:
    value = getattr(obj, name.rpartition(".")[2])
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"config: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class GPT2Config:
    """Shape and switches of a decoder-only transformer. Defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257  # byte-level BPE: 256 bytes + 50,000 merges + <|endoftext|>
    n_positions: int = 1024  # context length (learned positions: the rows of W_P)
    n_embd: int = 768  # width of the residual stream (d_model)
    n_layer: int = 12  # number of transformer blocks
    n_head: int = 12  # attention heads per block; head size = n_embd // n_head
    layer_norm_epsilon: float = 1e-5  # ε of every norm (LayerNorm or RMSNorm)
    dropout: float = 0.0  # only used when training; GPT-2 itself used 0.1
    # --- the switches (GPT-2's choice first) ---------------------------------------------------
    positions: Positions = "learned"  # learned W_P | fixed sinusoids added to x | RoPE on q, k
    rope_theta: float = 10000.0  # RoPE base: pair i turns by position · θ^(-2i/d)
    partial_rotary_factor: float = 1.0  # share of each head's dimensions that RoPE rotates
    rope_scaling: RopeScaling | None = None  # Llama 3.1's long-context frequency scaling
    norm: Norm = "layernorm"  # (x - mean)/std · g + b | x / rms · g
    norm_position: NormPosition = "pre"  # x + f(norm(x)) | norm(x + f(x)) (GPT-1, 2017)
    final_norm: bool = True  # ln_f before the output layer
    activation: Activation = "gelu_tanh"  # MLP: GELU (tanh form) | GELU (erf) | ReLU | SwiGLU
    n_inner: int | None = None  # MLP hidden size; None = 4 · n_embd
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None = n_head
    qkv_bias: bool = True  # biases of the q, k, v projections
    attn_out_bias: bool = True  # bias of the attention output projection
    mlp_bias: bool = True  # biases of the MLP's linear layers
    tie_word_embeddings: bool = True  # output layer = W_Eᵀ (no matrix of its own)
    bos_token_id: int | None = None  # None: GPT-2's <|endoftext|> in a gpt2 config.json
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            _check_positive_int(field, self)
        if self.n_embd % self.n_head:
            raise UsageError(
                f"config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"config: dropout must be in [0, 1), got {self.dropout}")
        for field, choices in CHOICES.items():
            if getattr(self, field) not in choices:
                raise UsageError(
                    f"config: {field} must be one of {', '.join(choices)}; got "
                    f"{getattr(self, field)!r}"
                )
        for field in ("final_norm", *BIASES, "tie_word_embeddings"):
            if not isinstance(getattr(self, field), bool):
                raise UsageError(f"config: {field} must be true or false")
        for field in ("n_inner", "n_kv_head"):
            if getattr(self, field) is not None:
                _check_positive_int(field, self)
        if self.n_head % self.n_key_value_heads:
            raise UsageError(
                f"config: n_head ({self.n_head}) must be a multiple of n_kv_head "
                f"({self.n_kv_head}): each key/value head serves a group of query heads"
            )
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise UsageError(
                f"config: rope_scaling must be a RopeScaling, got {self.rope_scaling!r}"
            )
        self._check_positions()

    def _check_positions(self) -> None:
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise UsageError(f"config: sinusoidal positions need an even n_embd, got {self.n_embd}")
        if self.positions != "rope":
            changed = [
                f
                for f in ("rope_theta", "partial_rotary_factor", "rope_scaling")
                if getattr(self, f) != getattr(GPT2Config, f)
            ]
            if changed:
                raise UsageError(
                    f"config: {changed[0]} is set but positions is {self.positions!r}; it "
                    "applies to positions='rope'"
                )
            return
        if not self.rope_theta > 0:
            raise UsageError(f"config: rope_theta must be positive, got {self.rope_theta}")
        if not 0 < self.partial_rotary_factor <= 1:
            raise UsageError(
                f"config: partial_rotary_factor must be in (0, 1], got {self.partial_rotary_factor}"
            )
        if self.rotary_dim % 2 or self.rotary_dim == 0:
            raise UsageError(
                f"config: rope rotates pairs of dimensions, so the rotated part of a head "
                f"(head_dim {self.head_dim} × partial_rotary_factor {self.partial_rotary_factor} "
                f"= {self.head_dim * self.partial_rotary_factor:g}) must be a positive even number"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_key_value_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is not set (multi-head attention)."""
        return self.n_kv_head or self.n_head

    @property
    def d_mlp(self) -> int:
        """The MLP's hidden size: n_inner, or 4 · n_embd when it is not set."""
        return self.n_inner or 4 * self.n_embd

    @property
    def rotary_dim(self) -> int:
        """Dimensions of each head that RoPE rotates (the first ones; the rest pass unchanged)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def replace(self, **changes: Any) -> GPT2Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (rope_scaling as a dict)."""
        return dataclasses.asdict(self)

    # --- how far from GPT-2 ----------------------------------------------------------------------
    def changes_from_gpt2(self) -> list[str]:
        """The switches this config sets away from GPT-2's choice, in words (empty for GPT-2 of
        any size): what a tool that lays out GPT-2's architecture only (the spreadsheet) names."""
        found = []
        if self.positions != "learned":
            found.append(f"{self.positions} positions")
        if self.norm != "layernorm":
            found.append(f"norm {self.norm!r}")
        if self.norm_position != "pre":
            found.append(f"norm_position {self.norm_position!r}")
        if not self.final_norm:
            found.append("final_norm=False")
        if self.activation != "gelu_tanh":
            found.append(f"activation {self.activation!r}")
        if self.d_mlp != 4 * self.n_embd:
            found.append(f"n_inner={self.n_inner} (an MLP width other than 4·n_embd)")
        if self.n_key_value_heads != self.n_head:
            found.append(f"n_kv_head={self.n_kv_head} (grouped-query attention)")
        found += [f"{bias}=False" for bias in BIASES if not getattr(self, bias)]
        if not self.tie_word_embeddings:
            found.append("tie_word_embeddings=False (a separate output layer)")
        return found

    # --- Hugging Face config.json -------------------------------------------------------------
    @property
    def hf_model_type(self) -> str:
        """The Hugging Face model type that describes this config: gpt2, openai-gpt, llama,
        qwen2, or gpt2lab (our own) for a mix that none of them has."""
        for model_type, fits in _FAMILIES.items():
            if fits(self):
                return model_type
        return "gpt2lab"

    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json that ``transformers`` reads (its model class for ``hf_model_type``)."""
        return _WRITERS[self.hf_model_type](self)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> GPT2Config:
        """Read a Hugging Face config.json (gpt2, openai-gpt, llama, qwen2 or gpt2lab) and refuse
        what gpt2lab cannot represent, naming the key."""
        model_type = d.get("model_type", "gpt2")
        if model_type not in _READERS:
            raise CheckpointError(
                f"config.json is for model_type {model_type!r}; gpt2lab reads "
                f"{', '.join(map(repr, _READERS))}"
            )
        try:
            return _READERS[model_type](_Keys(d, model_type))
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


# --- reading and writing each model type --------------------------------------------------------
_MISSING = object()
_NUMBER = (int, float)


class _Keys:
    """A config.json's values, each read with its JSON type checked (one clear error)."""

    def __init__(self, d: dict[str, Any], model_type: str) -> None:
        self.d, self.model_type = d, model_type

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.d:
            if default is _MISSING:
                raise CheckpointError(f"config.json (model_type {self.model_type!r}) lacks {key}")
            return default
        value = self.d[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise CheckpointError(f"config.json: {key} has the wrong type: {value!r}")
        return value

    def only(self, key: str, allowed: tuple[Any, ...], default: Any) -> None:
        """Refuse a key whose value gpt2lab does not implement (and never will: not a switch)."""
        value = self.d.get(key, default)
        if value not in allowed:
            raise CheckpointError(
                f"config.json sets {key}={value!r}; gpt2lab's {self.model_type} has "
                f"{key} in {[*allowed]}"
            )


def _token_ids(keys: _Keys) -> dict[str, Any]:
    eos = keys.get("eos_token_id", (int, list, type(None)), None)
    if isinstance(eos, list):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in eos):
            raise CheckpointError(f"config.json: eos_token_id has the wrong type: {eos!r}")
        eos = tuple(eos)
    return {"bos_token_id": keys.get("bos_token_id", (int, type(None)), None), "eos_token_id": eos}


# GPT-2's activation_function names (transformers' ACT2FN: gelu_new = gelu_pytorch_tanh = tanh form)
_HF_ACTIVATIONS: dict[str, Activation] = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}


# GPT-1's afn: its "gelu" is the tanh form (OpenAI's code, and transformers' OpenAIGPT: gelu_new)
_GPT1_ACTIVATIONS: dict[str, Activation] = {"gelu": "gelu_tanh", "relu": "relu"}


def _activation(keys: _Keys, key: str, default: str) -> Activation:
    name = keys.get(key, str, default)
    if name not in _HF_ACTIVATIONS:
        raise CheckpointError(
            f"config.json sets {key}={name!r}; gpt2lab has {', '.join(_HF_ACTIVATIONS)}"
        )
    return _HF_ACTIVATIONS[name]


def _read_gpt2(keys: _Keys) -> GPT2Config:
    for key, allowed, default in (
        ("scale_attn_weights", (True,), True),
        ("scale_attn_by_inverse_layer_idx", (False,), False),
        ("reorder_and_upcast_attn", (False,), False),
        ("add_cross_attention", (False,), False),
    ):
        keys.only(key, allowed, default)
    # GPT-2 files always name <|endoftext|>: keep the default (None) for it
    ids: dict[str, Any] = {
        k: (None if v == EOT_TOKEN_ID else v) for k, v in _token_ids(keys).items()
    }
    return GPT2Config(
        vocab_size=keys.get("vocab_size", int, 50257),
        n_positions=keys.get("n_positions", int, keys.get("n_ctx", int, 1024)),
        n_embd=keys.get("n_embd", int, 768),
        n_layer=keys.get("n_layer", int, 12),
        n_head=keys.get("n_head", int, 12),
        layer_norm_epsilon=keys.get("layer_norm_epsilon", _NUMBER, 1e-5),
        activation=_activation(keys, "activation_function", "gelu_new"),
        n_inner=keys.get("n_inner", (int, type(None)), None),
        tie_word_embeddings=keys.get("tie_word_embeddings", bool, True),
        **ids,
    )


def _write_gpt2(c: GPT2Config) -> dict[str, Any]:
    names = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_ctx": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.n_inner,
        "activation_function": names[c.activation],
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": EOT_TOKEN_ID if c.bos_token_id is None else c.bos_token_id,
        "eos_token_id": EOT_TOKEN_ID if c.eos_token_id is None else _json_ids(c.eos_token_id),
    }


def _json_ids(ids: int | tuple[int, ...] | None) -> int | list[int] | None:
    return list(ids) if isinstance(ids, tuple) else ids


def _read_openai_gpt(keys: _Keys) -> GPT2Config:
    """GPT-1 (transformers' OpenAIGPTConfig): post-LN blocks, no final norm, tied output."""
    keys.only("tie_word_embeddings", (True,), True)
    keys.only("afn", tuple(_GPT1_ACTIVATIONS), "gelu")
    return GPT2Config(
        vocab_size=keys.get("vocab_size", int, 40478),
        n_positions=keys.get("n_positions", int, keys.get("n_ctx", int, 512)),
        n_embd=keys.get("n_embd", int, 768),
        n_layer=keys.get("n_layer", int, 12),
        n_head=keys.get("n_head", int, 12),
        layer_norm_epsilon=keys.get("layer_norm_epsilon", _NUMBER, 1e-5),
        activation=_GPT1_ACTIVATIONS[keys.get("afn", str, "gelu")],
        norm_position="post",
        final_norm=False,
        **_token_ids(keys),
    )


def _write_openai_gpt(c: GPT2Config) -> dict[str, Any]:
    names = {v: k for k, v in _GPT1_ACTIVATIONS.items()}
    return {
        "model_type": "openai-gpt",
        "architectures": ["OpenAIGPTLMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "afn": names[c.activation],
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": _json_ids(c.eos_token_id),
    }


def _rope(keys: _Keys) -> dict[str, Any]:
    """rope_theta, partial_rotary_factor and rope_scaling, from the classic keys or from
    transformers 5's ``rope_parameters``."""
    params = keys.get("rope_parameters", (dict, type(None)), None) or {}
    sub = _Keys(params, keys.model_type)
    theta = sub.get("rope_theta", _NUMBER, keys.get("rope_theta", _NUMBER, 10000.0))
    partial = sub.get(
        "partial_rotary_factor", _NUMBER, keys.get("partial_rotary_factor", _NUMBER, 1.0)
    )
    scaling = keys.get("rope_scaling", (dict, type(None)), None) or params
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return {"rope_theta": float(theta), "partial_rotary_factor": float(partial)}
    if rope_type != "llama3":
        raise CheckpointError(
            f"config.json: rope scaling {rope_type!r} is not supported; gpt2lab has Llama 3's "
            "('llama3')"
        )
    s = _Keys(scaling, keys.model_type)
    return {
        "rope_theta": float(theta),
        "partial_rotary_factor": float(partial),
        "rope_scaling": RopeScaling(
            factor=float(s.get("factor", _NUMBER)),
            low_freq_factor=float(s.get("low_freq_factor", _NUMBER)),
            high_freq_factor=float(s.get("high_freq_factor", _NUMBER)),
            original_max_position_embeddings=s.get("original_max_position_embeddings", int),
        ),
    }


def _read_llama(keys: _Keys) -> GPT2Config:
    """Llama (and Qwen2, which adds biases to q, k and v): RoPE, RMSNorm, SwiGLU, GQA."""
    keys.only("hidden_act", ("silu",), "silu")
    n_embd, n_head = keys.get("hidden_size", int), keys.get("num_attention_heads", int)
    head_dim = keys.get("head_dim", (int, type(None)), None)
    if head_dim is not None and n_head > 0 and head_dim * n_head != n_embd:
        raise CheckpointError(
            f"config.json sets head_dim={head_dim}, not hidden_size / num_attention_heads "
            f"({n_embd} / {n_head}); gpt2lab's heads split the width evenly"
        )
    if keys.model_type == "qwen2":
        keys.only("use_sliding_window", (False,), False)
        biases: dict[str, Any] = {"qkv_bias": True, "attn_out_bias": False, "mlp_bias": False}
    else:
        attention_bias = keys.get("attention_bias", bool, False)
        biases = {
            "qkv_bias": attention_bias,
            "attn_out_bias": attention_bias,
            "mlp_bias": keys.get("mlp_bias", bool, False),
        }
    return GPT2Config(
        vocab_size=keys.get("vocab_size", int),
        n_positions=keys.get("max_position_embeddings", int),
        n_embd=n_embd,
        n_layer=keys.get("num_hidden_layers", int),
        n_head=n_head,
        n_kv_head=keys.get("num_key_value_heads", (int, type(None)), None),
        layer_norm_epsilon=keys.get("rms_norm_eps", _NUMBER, 1e-6),
        dropout=keys.get("attention_dropout", _NUMBER, 0.0),
        positions="rope",
        norm="rmsnorm",
        activation="swiglu",
        n_inner=keys.get("intermediate_size", int),
        tie_word_embeddings=keys.get("tie_word_embeddings", bool, False),
        **_rope(keys),
        **biases,
        **_token_ids(keys),
    )


def _write_llama(c: GPT2Config) -> dict[str, Any]:
    qwen2 = c.hf_model_type == "qwen2"
    d: dict[str, Any] = {
        "model_type": c.hf_model_type,
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.d_mlp,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": c.n_positions,
        "rms_norm_eps": c.layer_norm_epsilon,
        "rope_theta": c.rope_theta,
        "rope_scaling": None if c.rope_scaling is None else c.rope_scaling.to_hf_dict(),
        "attention_dropout": c.dropout,
        "tie_word_embeddings": c.tie_word_embeddings,
        "initializer_range": 0.02,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": _json_ids(c.eos_token_id),
    }
    if qwen2:
        d |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": c.n_layer}
    else:
        d |= {"head_dim": c.head_dim, "attention_bias": c.qkv_bias, "mlp_bias": c.mlp_bias}
    return d


def _read_gpt2lab(keys: _Keys) -> GPT2Config:
    """gpt2lab's own config.json: every field of GPT2Config by its name."""
    fields = {f.name: f for f in dataclasses.fields(GPT2Config)}
    unknown = sorted(set(keys.d) - set(fields) - {"model_type", "architectures"})
    if unknown:
        raise CheckpointError(f"config.json (model_type 'gpt2lab') has unknown keys {unknown}")
    values = {name: keys.d[name] for name in fields if name in keys.d}
    try:
        if isinstance(values.get("rope_scaling"), dict):
            s = _Keys(values["rope_scaling"], "gpt2lab")
            values["rope_scaling"] = RopeScaling(
                factor=s.get("factor", _NUMBER),
                low_freq_factor=s.get("low_freq_factor", _NUMBER),
                high_freq_factor=s.get("high_freq_factor", _NUMBER),
                original_max_position_embeddings=s.get("original_max_position_embeddings", int),
                rope_type=s.get("rope_type", str, "llama3"),
            )
        if isinstance(values.get("eos_token_id"), list):
            values["eos_token_id"] = tuple(values["eos_token_id"])
        return GPT2Config(**values)
    except TypeError as e:  # a value of the wrong JSON type reaching an arithmetic check
        raise CheckpointError(f"config.json: {e}") from None


def _write_gpt2lab(c: GPT2Config) -> dict[str, Any]:
    d = c.to_dict()
    d["eos_token_id"] = _json_ids(c.eos_token_id)
    return {"model_type": "gpt2lab", "architectures": ["GPT2"], **d}


def _is_plain_decoder(c: GPT2Config) -> bool:
    """Learned positions, LayerNorm, biases everywhere, multi-head, a GELU or ReLU MLP."""
    return (
        c.positions == "learned"
        and c.norm == "layernorm"
        and c.activation != "swiglu"
        and c.n_kv_head in (None, c.n_head)
        and all(getattr(c, b) for b in BIASES)
    )


def _is_llama_like(c: GPT2Config) -> bool:
    return (
        c.positions == "rope"
        and c.norm == "rmsnorm"
        and c.norm_position == "pre"
        and c.final_norm
        and c.activation == "swiglu"
        and c.partial_rotary_factor == 1.0
    )


_FAMILIES: dict[str, Callable[[GPT2Config], bool]] = {
    "gpt2": lambda c: _is_plain_decoder(c) and c.norm_position == "pre" and c.final_norm,
    "openai-gpt": lambda c: (
        _is_plain_decoder(c)
        and c.norm_position == "post"
        and not c.final_norm
        and c.tie_word_embeddings
        and c.n_inner in (None, 4 * c.n_embd)
        and c.activation in _GPT1_ACTIVATIONS.values()
    ),
    "llama": lambda c: _is_llama_like(c) and c.qkv_bias == c.attn_out_bias,
    "qwen2": lambda c: (
        _is_llama_like(c)
        and c.rope_scaling is None
        and (c.qkv_bias, c.attn_out_bias, c.mlp_bias) == (True, False, False)
    ),
}
_READERS: dict[str, Callable[[_Keys], GPT2Config]] = {
    "gpt2": _read_gpt2,
    "openai-gpt": _read_openai_gpt,
    "llama": _read_llama,
    "qwen2": _read_llama,
    "gpt2lab": _read_gpt2lab,
}
_WRITERS: dict[str, Callable[[GPT2Config], dict[str, Any]]] = {
    "gpt2": _write_gpt2,
    "openai-gpt": _write_openai_gpt,
    "llama": _write_llama,
    "qwen2": _write_llama,
    "gpt2lab": _write_gpt2lab,
}


# --- parameters, worked out from the config ----------------------------------------------------
def parameter_counts(config: GPT2Config) -> dict[str, int]:
    """Parameters by component, from the config alone (nothing is allocated), plus total.

    With C = n_embd, D = head_dim, H = n_head, K = key/value heads, F = d_mlp, V = vocab_size:
    attention has W_Q [C, H·D], W_K and W_V [C, K·D], W_O [H·D, C] per block; the MLP has
    [C, F] and [F, C], plus a second [C, F] (the gate) for SwiGLU; a LayerNorm has C weights
    and C biases, an RMSNorm C weights. A tied output layer is the embedding, counted once.
    """
    c = config
    C, D, H, K, F, V = c.n_embd, c.head_dim, c.n_head, c.n_key_value_heads, c.d_mlp, c.vocab_size
    attention = C * H * D + 2 * C * K * D + H * D * C
    attention += (H * D + 2 * K * D) * c.qkv_bias + C * c.attn_out_bias
    gated = c.activation == "swiglu"
    mlp = (3 if gated else 2) * C * F + ((2 if gated else 1) * F + C) * c.mlp_bias
    norm = C * (2 if c.norm == "layernorm" else 1)
    counts = {
        "embedding": V * C,
        "positions": c.n_positions * C if c.positions == "learned" else 0,
        "attention": c.n_layer * attention,
        "mlp": c.n_layer * mlp,
        "norms": norm * (2 * c.n_layer + c.final_norm),
        "unembedding": 0 if c.tie_word_embeddings else V * C,
    }
    counts["total"] = sum(counts.values())
    return counts


def kv_cache_bytes_per_token(config: GPT2Config, bytes_per_value: int = 4) -> int:
    """Memory the KV cache holds per token: keys and values of K heads of size D in each block,
    2 · n_layer · K · D values (float32: 4 bytes each, bfloat16: 2)."""
    return 2 * config.n_layer * config.n_key_value_heads * config.head_dim * bytes_per_value


def describe(config: GPT2Config) -> dict[str, int | str]:
    """The architecture in a few words per row, as ``gpt2lab info`` shows it side by side."""
    c = config
    positions: str = c.positions
    if c.positions == "rope":
        theta = c.rope_theta
        positions = f"rope θ={theta:,.0f}" if theta == int(theta) else f"rope θ={theta:g}"
        if c.partial_rotary_factor != 1:
            positions += f" on {c.rotary_dim} of {c.head_dim} dims"
        if c.rope_scaling is not None:
            positions += f", {c.rope_scaling.rope_type} ×{c.rope_scaling.factor:g}"
    biases = [b.removesuffix("_bias") for b in BIASES if getattr(c, b)]
    return {
        "layers": c.n_layer,
        "width": c.n_embd,
        "heads": c.n_head,
        "kv heads": c.n_key_value_heads,
        "head size": c.head_dim,
        "MLP hidden": c.d_mlp,
        "context": c.n_positions,
        "vocabulary": c.vocab_size,
        "positions": positions,
        "norm": f"{c.norm}, {c.norm_position}" + ("" if c.final_norm else ", no final"),
        "activation": c.activation,
        "biases": "all" if len(biases) == len(BIASES) else ", ".join(biases) or "none",
        "output layer": "tied" if c.tie_word_embeddings else "separate",
    }


# --- known architectures -------------------------------------------------------------------------
def _llama3(**sizes: Any) -> GPT2Config:
    """Llama 3.x: vocabulary 128,256, RoPE θ = 500,000 with Llama 3 scaling, 8 key/value heads."""
    factor = sizes.pop("rope_factor")
    return GPT2Config(
        vocab_size=128256,
        n_positions=131072,
        n_kv_head=8,
        layer_norm_epsilon=1e-5,
        positions="rope",
        rope_theta=500000.0,
        rope_scaling=RopeScaling(factor, 1.0, 4.0, 8192),
        norm="rmsnorm",
        activation="swiglu",
        qkv_bias=False,
        attn_out_bias=False,
        mlp_bias=False,
        bos_token_id=128000,
        eos_token_id=128001,
        **sizes,
    )


_LLAMA_LIKE: dict[str, Any] = {
    "positions": "rope",
    "norm": "rmsnorm",
    "activation": "swiglu",
    "attn_out_bias": False,
    "mlp_bias": False,
}

PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(n_embd=768, n_layer=12, n_head=12),  # 124M
    "gpt2-medium": GPT2Config(n_embd=1024, n_layer=24, n_head=16),  # 355M
    "gpt2-large": GPT2Config(n_embd=1280, n_layer=36, n_head=20),  # 774M
    "gpt2-xl": GPT2Config(n_embd=1600, n_layer=48, n_head=25),  # 1558M
    "gpt1": GPT2Config(
        vocab_size=40478,
        n_positions=512,
        norm_position="post",
        final_norm=False,
    ),
    "transformer-base": GPT2Config(
        vocab_size=37000,
        n_positions=512,
        n_embd=512,
        n_layer=6,
        n_head=8,
        n_inner=2048,
        layer_norm_epsilon=1e-6,
        positions="sinusoidal",
        norm_position="post",
        final_norm=False,
        activation="relu",
    ),
    "smollm2-135m": GPT2Config(
        vocab_size=49152,
        n_positions=8192,
        n_embd=576,
        n_layer=30,
        n_head=9,
        n_kv_head=3,
        n_inner=1536,
        rope_theta=100000.0,
        qkv_bias=False,
        bos_token_id=0,
        eos_token_id=0,
        **_LLAMA_LIKE,
    ),
    "qwen2-0.5b": GPT2Config(
        vocab_size=151936,
        n_positions=131072,
        n_embd=896,
        n_layer=24,
        n_head=14,
        n_kv_head=2,
        n_inner=4864,
        layer_norm_epsilon=1e-6,
        rope_theta=1000000.0,
        qkv_bias=True,
        bos_token_id=151643,
        eos_token_id=151643,
        **_LLAMA_LIKE,
    ),
    "llama-3.2-1b": _llama3(n_embd=2048, n_layer=16, n_head=32, n_inner=8192, rope_factor=32.0),
    "llama-3.1-8b": _llama3(
        n_embd=4096,
        n_layer=32,
        n_head=32,
        n_inner=14336,
        rope_factor=8.0,
        tie_word_embeddings=False,
    ),
    "llama-3.1-70b": _llama3(
        n_embd=8192,
        n_layer=80,
        n_head=64,
        n_inner=28672,
        rope_factor=8.0,
        tie_word_embeddings=False,
    ),
    "llama-3.1-405b": _llama3(
        n_embd=16384,
        n_layer=126,
        n_head=128,
        n_inner=53248,
        rope_factor=8.0,
        tie_word_embeddings=False,
    ),
}

# What each preset describes, where a name alone could mislead.
PRESET_NOTES: dict[str, str] = {
    "gpt2": "OpenAI GPT-2 small (2019)",
    "gpt2-medium": "OpenAI GPT-2 medium",
    "gpt2-large": "OpenAI GPT-2 large",
    "gpt2-xl": "OpenAI GPT-2 XL",
    "gpt1": "OpenAI GPT (2018): post-LN, no final norm, 512 positions",
    "transformer-base": (
        "the decoder-only analogue of Vaswani et al.'s base model (2017): its sizes, sinusoids, "
        "post-LN and ReLU, one stack with no encoder and no cross-attention; the 37,000 "
        "vocabulary is its shared English-German BPE"
    ),
    "smollm2-135m": "Hugging Face SmolLM2-135M (Llama architecture)",
    "qwen2-0.5b": "Qwen2-0.5B: Llama's pieces with biased q, k, v",
    "llama-3.2-1b": "Meta Llama 3.2 1B",
    "llama-3.1-8b": "Meta Llama 3.1 8B",
    "llama-3.1-70b": "Meta Llama 3.1 70B",
    "llama-3.1-405b": "Meta Llama 3.1 405B",
}


def preset(name: str) -> GPT2Config:
    """The config of a known architecture by name (gpt2, gpt2-medium, ..., llama-3.1-8b)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
