"""Hugging Face names <-> gpt2lab's, one table per model family: Llama (and Qwen2), GPT-1.

gpt2lab names every parameter as GPT-2 does (``transformer.h.{L}.attn.c_attn.weight``...; see
the table in ``GPT2Config``'s module) and stores weight matrices ``[in, out]`` like GPT-2's
Conv1D. Llama's files use ``nn.Linear``'s ``[out, in]`` (so each matrix is transposed on the way)
and keep q, k and v as three matrices, which gpt2lab holds fused in ``c_attn``:
columns q (H·D) | k (K·D) | v (K·D). GPT-1's layers are Conv1D already; only its embeddings have
other names. Converting a meta model's tensors gives the names and shapes a file must have, so
a folder is checked in the file's own names before anything is converted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..config import GPT2Config
from ..errors import CheckpointError

Layout = Literal["same", "transposed"]  # transposed: HF nn.Linear [out, in] <-> our [in, out]
OURS_BLOCK = "transformer.h."  # our per-block names: transformer.h.{L}.<name>


@dataclass(frozen=True)
class NameTable:
    """How one family's files name gpt2lab's parameters.

    ``top``: whole-model tensors, HF name -> ours. ``block``: per-block tensors (after
    ``block_prefix`` + layer number), HF name -> (our name, layout). ``fused``: our fused
    tensor -> the HF tensors of q, k, v it concatenates (along its last axis) and their layout.
    ``base``: the prefix of every name but lm_head (added to files saved without it).
    ``ignored``: per-block buffers some files carry that are not weights (causal masks, RoPE
    frequencies).
    """

    base: str
    top: dict[str, str]
    block_prefix: str
    block: dict[str, tuple[str, Layout]]
    fused: dict[str, tuple[tuple[str, str, str], Layout]] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def _llama_block() -> dict[str, tuple[str, Layout]]:
    block: dict[str, tuple[str, Layout]] = {
        "input_layernorm.weight": ("ln_1.weight", "same"),
        "post_attention_layernorm.weight": ("ln_2.weight", "same"),
    }
    for hf, ours in (
        ("self_attn.o_proj", "attn.c_proj"),
        ("mlp.gate_proj", "mlp.c_gate"),
        ("mlp.up_proj", "mlp.c_fc"),
        ("mlp.down_proj", "mlp.c_proj"),
    ):
        block[f"{hf}.weight"] = (f"{ours}.weight", "transposed")
        block[f"{hf}.bias"] = (f"{ours}.bias", "same")  # only when the config has the bias
    return block


# LlamaForCausalLM; Qwen2ForCausalLM has the same names (with q/k/v biases).
LLAMA = NameTable(
    base="model.",
    top={
        "model.embed_tokens.weight": "transformer.wte.weight",
        "model.norm.weight": "transformer.ln_f.weight",
        "lm_head.weight": "lm_head.weight",  # only when untied
    },
    block_prefix="model.layers.",
    block=_llama_block(),
    ignored=("self_attn.rotary_emb.inv_freq",),  # older transformers saved RoPE's frequencies
    fused={
        "attn.c_attn.weight": (
            ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
            "transposed",
        ),
        "attn.c_attn.bias": (
            ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
            "same",
        ),
    },
)

# OpenAIGPTLMHeadModel (GPT-1): GPT-2's block names and Conv1D layout; ln_1 and ln_2 come after
# attention and the MLP (post-LN); the output layer is always the token embedding.
GPT1 = NameTable(
    base="transformer.",
    top={
        "transformer.tokens_embed.weight": "transformer.wte.weight",
        "transformer.positions_embed.weight": "transformer.wpe.weight",
    },
    block_prefix="transformer.h.",
    block={
        f"{layer}.{p}": (f"{layer}.{p}", "same")
        for layer in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        for p in ("weight", "bias")
    },
    ignored=("attn.bias",),
)

TABLES = {"llama": LLAMA, "qwen2": LLAMA, "openai-gpt": GPT1}
TIED_OUTPUT = "lm_head.weight"


def table_for(config: GPT2Config) -> NameTable | None:
    """The name table of the Hugging Face family that describes ``config`` (None: GPT-2's
    names and gpt2lab's own are ours already)."""
    return TABLES.get(config.hf_model_type)


def _convert(tensor: torch.Tensor, layout: Layout) -> torch.Tensor:
    return tensor.t() if layout == "transposed" and tensor.dim() == 2 else tensor


def _split(name: str, table: NameTable) -> tuple[str, str] | None:
    """(layer, rest) of a per-block name of the file, else None."""
    match = re.fullmatch(re.escape(table.block_prefix) + r"(\d+)\.(.+)", name)
    return (match[1], match[2]) if match else None


def with_base(state: dict[str, torch.Tensor], table: NameTable) -> dict[str, torch.Tensor]:
    """The file's tensors under full names (files of the bare model lack ``model.`` or
    ``transformer.``), without the mask buffers some files carry."""
    out = {}
    for name, tensor in state.items():
        full = name if name.startswith(table.base) or name == TIED_OUTPUT else table.base + name
        parts = _split(full, table)
        if parts and parts[1] in table.ignored:
            continue
        out[full] = tensor
    return out


def to_hf(state: dict[str, torch.Tensor], config: GPT2Config) -> dict[str, torch.Tensor]:
    """Our state dict under the family's names and layouts (q, k, v split out of c_attn).

    Works on meta tensors too: converting a meta model gives the names and shapes a file needs.
    """
    table = table_for(config)
    if table is None:
        return dict(state)
    top = {v: k for k, v in table.top.items()}
    block = {ours: (hf, layout) for hf, (ours, layout) in table.block.items()}
    widths = [config.n_head * config.head_dim] + 2 * [config.n_key_value_heads * config.head_dim]
    out = {}
    for name, tensor in state.items():
        layer, _, rest = name.removeprefix(OURS_BLOCK).partition(".")
        if name in top:
            out[top[name]] = tensor
        elif name.startswith(OURS_BLOCK) and rest in block:
            hf, layout = block[rest]
            out[f"{table.block_prefix}{layer}.{hf}"] = _convert(tensor, layout)
        elif name.startswith(OURS_BLOCK) and rest in table.fused:
            names, layout = table.fused[rest]
            for hf, part in zip(names, tensor.split(widths, dim=-1)):
                out[f"{table.block_prefix}{layer}.{hf}"] = _convert(part, layout).clone()
        else:
            raise CheckpointError(f"{name} has no name in a {config.hf_model_type} checkpoint")
    return out


def from_hf(state: dict[str, torch.Tensor], config: GPT2Config) -> dict[str, torch.Tensor]:
    """A family's checked state dict (see ``to_hf`` for the names) under our names and layouts."""
    table = table_for(config)
    if table is None:
        return state
    out = {}
    for name, tensor in state.items():
        parts = _split(name, table)
        if name in table.top:
            out[table.top[name]] = tensor
        elif parts and parts[1] in table.block:
            ours, layout = table.block[parts[1]]
            out[f"{OURS_BLOCK}{parts[0]}.{ours}"] = _convert(tensor, layout)
    for layer in range(config.n_layer):
        for ours, (names, layout) in table.fused.items():
            hf = [f"{table.block_prefix}{layer}.{n}" for n in names]
            if all(n in state for n in hf):
                q_k_v = [_convert(state[n], layout) for n in hf]
                out[f"{OURS_BLOCK}{layer}.{ours}"] = torch.cat(q_k_v, dim=-1)
    return out
