"""ids -> embeddings -> n_layer blocks -> ln_f -> logits: GPT-2 as the paper and OpenAI wrote it,
with a switch for each change made to the decoder since (and before): see gpt2lab.config.

Shapes: B = batch, T = new positions, S = all positions attended to (past + new), C = n_embd,
H = n_head (query heads), K = key/value heads (= H unless grouped-query), D = C / H (head size),
F = the MLP's hidden size (4C in GPT-2), V = vocab_size.

Every step of a block is a small function below, in the order data flows through it:

    x ─ln_1─▶ q,k,v ─(rope)─▶ scores ─mask─▶ softmax ─▶ z = pattern·v ─▶ attn_out ─(+x)─▶ resid_mid
    resid_mid ─ln_2─▶ mlp_pre ─gelu─▶ mlp_post ─▶ mlp_out ─(+resid_mid)─▶ resid_post

(post-norm blocks, GPT-1's, normalize after each sum instead: resid_mid = ln_1(x + attn_out)).
Each arrow's result passes through ``hook(hooks, name, value)`` under its TransformerLens name
(``blocks.0.attn.hook_pattern``; see gpt2lab.hooks), where a trace reads it or an edit replaces
it, in TransformerLens's layout: q and z [B, T, H, D], k and v [B, T, K, D], scores and pattern
[B, H, T, S]. Without hooks that call returns the value untouched.

Weights are stored as OpenAI stored them ([in, out], y = x @ W + b) under Hugging Face's
GPT-2 state-dict names, so checkpoints load without renaming or transposing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fast
from .config import GPT2Config, RopeScaling, parameter_counts
from .errors import ContextLengthError, UsageError
from .hooks import Hooks, hook
from .kv_cache import KVCache, causal_mask
from .loss import next_token_loss
from .quantize import quantize_model

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


# --- the steps --------------------------------------------------------------------------------
def layer_norm_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """μ = mean(x), σ² = mean((x - μ)²) over the channels (the biased variance). -> [..., 1] each"""
    return x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)


def layer_norm_scale(var: Tensor, eps: float) -> Tensor:
    """scale = sqrt(σ² + ε): what each position is divided by. [..., 1] -> same"""
    return torch.sqrt(var + eps)


def normalize(x: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """x̂ = (x - μ) / scale: every position gets mean 0 and variance 1. [..., C] -> same"""
    return (x - mean) / scale


def scale_shift(x_hat: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x̂ · g + b: LayerNorm's learned gain and bias, per channel. [..., C] -> same"""
    return x_hat * weight + bias


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b over the last dim. [..., C] -> same"""
    mean, var = layer_norm_stats(x)
    return scale_shift(normalize(x, mean, layer_norm_scale(var, eps)), weight, bias)


def rms_scale(x: Tensor, eps: float) -> Tensor:
    """rms = sqrt(mean(x²) + ε) over the channels: RMSNorm's divisor (no mean is taken out).
    [..., C] -> [..., 1]"""
    return torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def rms_normalize(x: Tensor, scale: Tensor) -> Tensor:
    """x̂ = x / rms: every position gets a root mean square of 1 (its mean is left as it is).
    [..., C] -> same"""
    return x / scale


def gain(x_hat: Tensor, weight: Tensor) -> Tensor:
    """x̂ · g: RMSNorm's learned gain, per channel (there is no bias). [..., C] -> same"""
    return x_hat * weight


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm(x) = x / sqrt(mean(x²) + ε) · g over the last dim (Zhang & Sennrich 2019; LLaMA).
    [..., C] -> same"""
    return gain(rms_normalize(x, rms_scale(x, eps)), weight)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """y = x @ W + b with W stored [in, out] (y = x @ W when the layer has no bias).
    [..., in] -> [..., out]"""
    return x @ weight if bias is None else x @ weight + bias


def sinusoidal_positions(positions: Tensor, n_embd: int) -> Tensor:
    """The original Transformer's fixed position vectors (Vaswani et al. 2017), added to x:
    PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)).
    positions [...] -> [..., C] (float32)

    Computed at the positions asked for rather than kept as a table: nothing to save or load.
    """
    two_i = torch.arange(0, n_embd, 2, device=positions.device, dtype=torch.float32)
    angles = positions[..., None].float() / 10000.0 ** (two_i / n_embd)  # [..., C/2]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # sin, cos interleaved


def rope_frequencies(
    rotary_dim: int,
    theta: float,
    scaling: RopeScaling | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """RoPE's angular speeds: pair i of a head turns by position · inv_freq_i, with
    inv_freq_i = θ^(-2i/d), i = 0..d/2-1 (d = rotary_dim): fast turns first, slow ones last.
    -> [d/2] float32

    Llama 3's scaling (``scaling``) slows the long wavelengths λ_i = 2π/inv_freq_i down: with
    L = original_max_position_embeddings, inv_freq is kept where λ < L/high_freq_factor, divided
    by ``factor`` where λ > L/low_freq_factor, and in between blended linearly in L/λ:
    s = (L/λ - low) / (high - low), inv_freq · ((1 - s)/factor + s).
    """
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device=device).float()
    inv_freq = 1.0 / theta ** (exponents / rotary_dim)
    if scaling is None:
        return inv_freq
    L = scaling.original_max_position_embeddings
    wavelength = 2 * math.pi / inv_freq
    slowed = torch.where(
        wavelength > L / scaling.low_freq_factor, inv_freq / scaling.factor, inv_freq
    )
    s = (L / wavelength - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - s) * slowed / scaling.factor + s * slowed
    between = (wavelength >= L / scaling.high_freq_factor) & (
        wavelength <= L / scaling.low_freq_factor
    )
    return torch.where(between, blended, slowed)


def rope_angles(positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of each position's angles, position · inv_freq_i, written twice over
    (dims i and i + d/2 form pair i, Hugging Face's layout). positions [B, T], inv_freq [d/2]
    -> (cos, sin), each [B, T, d] float32"""
    angles = positions[..., None].float() * inv_freq  # [B, T, d/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) with x1, x2 the two halves of the last dim: each pair (i, i + d/2)
    turned by 90°. [..., d] -> same"""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE (Su et al. 2021): rotate each pair (i, i + d/2) of the first d = rotary_dim dims of
    every head by the angle of its position: x·cos + rotate_half(x)·sin; the other dims pass.
    Then q·k depends on the positions only through their offset.
    x [B, T, H, D], cos and sin [B, T, d] -> [B, T, H, D]"""
    d = cos.size(-1)
    rotated, passed = x[..., :d], x[..., d:]
    cos, sin = cos[:, :, None].to(x.dtype), sin[:, :, None].to(x.dtype)  # the same for every head
    return torch.cat([rotated * cos + rotate_half(rotated) * sin, passed], dim=-1)


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """[B, T, n·D] -> [B, T, n, D]: each head gets its own D-wide slice of the channels."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Grouped-query attention: each of the K key/value heads serves n_rep = H/K query heads in a
    row (query head h reads key/value head h // n_rep). [B, S, K, D] -> [B, S, K·n_rep, D]"""
    if n_rep == 1:
        return x
    B, S, K, D = x.shape
    return x[:, :, :, None].expand(B, S, K, n_rep, D).reshape(B, S, K * n_rep, D)


def merge_heads(x: Tensor) -> Tensor:
    """[B, T, H, D] -> [B, T, C]: the heads' outputs side by side again."""
    B, T, H, D = x.shape
    return x.reshape(B, T, H * D)


def attention_scores(q: Tensor, k: Tensor) -> Tensor:
    """scores = q @ kᵀ / sqrt(D) per head: how well each query matches each key.
    q [B, T, H, D], k [B, S, H, D] -> [B, H, T, S]"""
    return torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.size(-1))


def apply_mask(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Set the scores of keys a query may not see (the future, padding) to -inf. -> [B, H, T, S]"""
    if allowed is None:
        return scores
    return scores.masked_fill(~allowed, float("-inf"))


def softmax(scores: Tensor) -> Tensor:
    """pattern = softmax(scores) over keys: rows sum to 1, -inf scores get 0. -> [B, H, T, S]"""
    return torch.softmax(scores, dim=-1)


def weighted_values(pattern: Tensor, v: Tensor) -> Tensor:
    """z = pattern @ v per head: each query's mix of the values it attends to.
    pattern [B, H, T, S], v [B, S, H, D] -> [B, T, H, D]"""
    return torch.einsum("bhts,bshd->bthd", pattern, v)


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh approximation as GPT-2 used: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gelu_exact(x: Tensor) -> Tensor:
    """GELU as defined, x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (GPT-1's "gelu"). [...] -> same"""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def relu(x: Tensor) -> Tensor:
    """ReLU = max(x, 0): the original Transformer's activation. [...] -> same"""
    return torch.clamp(x, min=0)


def silu(x: Tensor) -> Tensor:
    """SiLU (swish) = x·σ(x) = x / (1 + e^-x): the gate's activation in SwiGLU. [...] -> same"""
    return x * torch.sigmoid(x)


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """SwiGLU (Shazeer 2020; LLaMA): silu(x @ W_gate) ⊙ (x @ W_in), one linear layer gating the
    other. gate, up [..., F] -> [..., F]"""
    return silu(gate) * up


ACTIVATIONS = {"gelu_tanh": gelu, "gelu": gelu_exact, "relu": relu}  # one input; swiglu has two


# --- the layers -------------------------------------------------------------------------------
class LayerNorm(nn.Module):
    """LayerNorm whose steps are named ``{name}.hook_mean``, ``hook_var``, ``hook_scale``,
    ``hook_normalized``, ``hook_out`` (``name`` is blocks.L.ln1, blocks.L.ln2 or ln_final)."""

    def __init__(self, n_embd: int, eps: float, name: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))
        self.eps = eps
        self.prefix = name + "."

    def forward(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        if hooks is None:
            return layer_norm(x, self.weight, self.bias, self.eps)
        mean, var = layer_norm_stats(x)
        mean = hook(hooks, self.prefix + "hook_mean", mean)
        var = hook(hooks, self.prefix + "hook_var", var)
        scale = hook(hooks, self.prefix + "hook_scale", layer_norm_scale(var, self.eps))
        x_hat = hook(hooks, self.prefix + "hook_normalized", normalize(x, mean, scale))
        return hook(hooks, self.prefix + "hook_out", scale_shift(x_hat, self.weight, self.bias))


class RMSNorm(nn.Module):
    """RMSNorm whose steps are named ``{name}.hook_scale``, ``hook_normalized``, ``hook_out``
    (TransformerLens's RMSNorm has the first two; there is no mean and no variance)."""

    def __init__(self, n_embd: int, eps: float, name: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = None  # none to learn; the attribute says so where LayerNorm has one
        self.eps = eps
        self.prefix = name + "."

    def forward(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        if hooks is None:
            return rms_norm(x, self.weight, self.eps)
        scale = hook(hooks, self.prefix + "hook_scale", rms_scale(x, self.eps))
        x_hat = hook(hooks, self.prefix + "hook_normalized", rms_normalize(x, scale))
        return hook(hooks, self.prefix + "hook_out", gain(x_hat, self.weight))


Norm = LayerNorm | RMSNorm


def make_norm(config: GPT2Config, name: str) -> Norm:
    """The norm the config asks for (LayerNorm or RMSNorm), its steps named ``name``.…"""
    kind = LayerNorm if config.norm == "layernorm" else RMSNorm
    return kind(config.n_embd, config.layer_norm_epsilon, name)


class Linear(nn.Module):
    """A linear layer stored [in, out] (OpenAI's "Conv1D" layout): y = x @ W + b, or x @ W when
    built with ``bias=False`` (then ``self.bias`` is None: no parameter, not zeros)."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


Rope = tuple[Tensor, Tensor]  # RoPE's (cos, sin), each [B, T, rotary_dim]: see GPT2.rope_angles


class Attention(nn.Module):
    """Causal self-attention: H query heads, K key/value heads (K = H: multi-head; K < H:
    grouped-query, K = 1: multi-query), RoPE on q and k when the config's positions are rope."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_key_value_heads
        self.head_dim = D = config.head_dim
        self.layer = layer
        # W_Q, W_K, W_V side by side: [C, (H + 2K)·D], columns q | k | v
        width = (self.n_head + 2 * self.n_kv_head) * D
        self.c_attn = Linear(config.n_embd, width, bias=config.qkv_bias)
        self.c_proj = Linear(self.n_head * D, config.n_embd, bias=config.attn_out_bias)  # W_O
        self.dropout = config.dropout
        self.prefix = f"blocks.{layer}.attn."

    def forward(
        self,
        x: Tensor,
        allowed: Tensor | None,
        cache: KVCache | None,
        hooks: Hooks | None = None,
        rope: Rope | None = None,
    ) -> Tensor:
        """z of every head [B, T, H, D] for the (normalized) input x [B, T, C]."""
        name = self.prefix
        H, K, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.c_attn(x).split([H * D, K * D, K * D], dim=-1)
        q = hook(hooks, name + "hook_q", split_heads(q, H))  # [B, T, H, D]
        k = hook(hooks, name + "hook_k", split_heads(k, K))  # [B, T, K, D]
        v = hook(hooks, name + "hook_v", split_heads(v, K))
        if rope is not None:
            q = hook(hooks, name + "hook_rot_q", apply_rope(q, *rope))
            k = hook(hooks, name + "hook_rot_k", apply_rope(k, *rope))
        if cache is not None:  # the cache keeps [B, K, S, D], the fast path's layout
            k, v = cache.update(self.layer, k.transpose(1, 2), v.transpose(1, 2))
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, S, K, D]
        k, v = repeat_kv(k, H // K), repeat_kv(v, H // K)  # [B, S, H, D]
        scores = hook(hooks, name + "hook_unmasked_scores", attention_scores(q, k))
        scores = hook(hooks, name + "hook_attn_scores", apply_mask(scores, allowed))
        pattern = hook(hooks, name + "hook_pattern", softmax(scores))
        pattern = F.dropout(pattern, self.dropout, self.training)
        return hook(hooks, name + "hook_z", weighted_values(pattern, v))

    def project(self, z: Tensor) -> Tensor:
        """attn_out = concat of the heads' z @ W_O + b_O. [B, T, H, D] -> [B, T, C]"""
        return F.dropout(self.c_proj(merge_heads(z)), self.dropout, self.training)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> F -> activation -> C; with SwiGLU, a second C -> F layer
    (``c_gate``) gates the first: (silu(x @ W_gate) ⊙ (x @ W_in)) @ W_out."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        C, F_, bias = config.n_embd, config.d_mlp, config.mlp_bias
        self.activation = config.activation
        self.c_fc = Linear(C, F_, bias=bias)  # W_in
        self.c_gate = Linear(C, F_, bias=bias) if config.activation == "swiglu" else None
        self.c_proj = Linear(F_, C, bias=bias)  # W_out
        self.dropout = config.dropout
        self.prefix = f"blocks.{layer}.mlp."

    def forward(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        name = self.prefix
        if self.c_gate is not None:  # TransformerLens's GatedMLP names
            pre = hook(hooks, name + "hook_pre", self.c_gate(x))  # [B, T, F]
            pre_linear = hook(hooks, name + "hook_pre_linear", self.c_fc(x))
            post = hook(hooks, name + "hook_post", swiglu(pre, pre_linear))
        else:
            pre = hook(hooks, name + "hook_pre", self.c_fc(x))  # [B, T, F]
            post = hook(hooks, name + "hook_post", ACTIVATIONS[self.activation](pre))
        return F.dropout(self.c_proj(post), self.dropout, self.training)


class Block(nn.Module):
    """One transformer block. Pre-norm (GPT-2, LLaMA): x + attn(ln_1(x)), then + mlp(ln_2(·)).
    Post-norm (GPT-1, the 2017 Transformer): ln_1(x + attn(x)), then ln_2(· + mlp(·))."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.ln_1 = make_norm(config, f"blocks.{layer}.ln1")
        self.attn = Attention(config, layer)
        self.ln_2 = make_norm(config, f"blocks.{layer}.ln2")
        self.mlp = MLP(config, layer)
        self.post_norm = config.norm_position == "post"
        self.prefix = f"blocks.{layer}."

    def forward(
        self,
        x: Tensor,
        allowed: Tensor | None,
        cache: KVCache | None,
        hooks: Hooks | None = None,
        rope: Rope | None = None,
    ) -> Tensor:
        """resid_post [B, T, C] of the block for its input resid_pre [B, T, C]."""
        name = self.prefix
        resid_pre = hook(hooks, name + "hook_resid_pre", x)
        if self.post_norm:
            z = self.attn(resid_pre, allowed, cache, hooks, rope)
            attn_out = hook(hooks, name + "hook_attn_out", self.attn.project(z))
            resid_mid = hook(hooks, name + "hook_resid_mid", self.ln_1(resid_pre + attn_out, hooks))
            mlp_out = hook(hooks, name + "hook_mlp_out", self.mlp(resid_mid, hooks))
            return hook(hooks, name + "hook_resid_post", self.ln_2(resid_mid + mlp_out, hooks))
        z = self.attn(self.ln_1(resid_pre, hooks), allowed, cache, hooks, rope)
        attn_out = hook(hooks, name + "hook_attn_out", self.attn.project(z))
        resid_mid = hook(hooks, name + "hook_resid_mid", resid_pre + attn_out)
        mlp_out = hook(hooks, name + "hook_mlp_out", self.mlp(self.ln_2(resid_mid, hooks), hooks))
        return hook(hooks, name + "hook_resid_post", resid_mid + mlp_out)


class Blocks(nn.ModuleList):
    """The transformer blocks: an ``nn.ModuleList`` (state-dict names ``h.0.…``) of Block items.

    Only the type signatures change: indexing and iteration run ``nn.ModuleList``'s own code.
    """

    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[Block]: ...

        @overload
        def __getitem__(self, idx: slice) -> Blocks: ...

        @overload
        def __getitem__(self, idx: int) -> Block: ...

        def __getitem__(self, idx: int | slice) -> Block | Blocks: ...


class Transformer(nn.Module):
    """The embeddings, blocks and final norm of GPT-2, as typed attributes.

    A plain module rather than an ``nn.ModuleDict`` so that type checkers know each part's type;
    the attribute names (and their order) keep the state-dict names ``transformer.wte.weight``,
    ``transformer.h.0.…`` and ``transformer.ln_f.…`` that the released checkpoints use.
    ``wpe`` exists only for learned positions and ``ln_f`` only with a final norm (else None).
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = (  # learned position embeddings
            nn.Embedding(config.n_positions, config.n_embd)
            if config.positions == "learned"
            else None
        )
        self.h = Blocks(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config, "ln_final") if config.final_norm else None


class GPT2(nn.Module):
    """GPT-2 language model. ``model(ids)`` maps LongTensor [B, T] to float logits [B, T, V]."""

    def __init__(self, config: GPT2Config, tokenizer: Tokenizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.transformer = Transformer(config)
        # the output layer: W_Eᵀ itself when tied (GPT-2), else a matrix of its own [V, C]
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        )
        self.fast_path = True  # inference without hooks runs gpt2lab.fast; False: always the steps
        self.cuda_graphs = True  # on a GPU, generation replays a recorded step (fast.StaticDecoder)
        self.quantized: str | None = None  # "int8" after quantize("int8")
        self.fast_state = fast.FastState()  # the fast path's kernels and decoder, never saved
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std_resid = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * std_resid)
            elif name.endswith(("wte.weight", "wpe.weight")) or p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            elif ".ln_" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()

    # --- forward ------------------------------------------------------------------------------
    def embed(self, ids: Tensor, positions: Tensor, hooks: Hooks | None = None) -> Tensor:
        """x₀ = W_E[ids] + W_P[positions]: token embedding plus the position embedding, learned
        (GPT-2) or sinusoidal (2017); with RoPE positions enter in attention instead: x₀ = W_E[ids].
        """
        x = hook(hooks, "hook_embed", self.transformer.wte(ids))
        wpe = self.transformer.wpe
        if wpe is not None:
            x = x + hook(hooks, "hook_pos_embed", wpe(positions))
        elif self.config.positions == "sinusoidal":
            pe = sinusoidal_positions(positions, self.config.n_embd).to(x.dtype)
            x = x + hook(hooks, "hook_pos_embed", pe)
        return F.dropout(x, self.config.dropout, self.training)

    def rope_angles(self, positions: Tensor) -> Rope | None:
        """RoPE's (cos, sin) [B, T, rotary_dim] at positions [B, T], in the model's dtype; None
        when the config's positions are not rope. Made once per forward pass, used by every block.
        """
        c = self.config
        if c.positions != "rope":
            return None
        inv_freq = rope_frequencies(c.rotary_dim, c.rope_theta, c.rope_scaling, positions.device)
        dtype = self.transformer.wte.weight.dtype
        cos, sin = rope_angles(positions, inv_freq)
        return cos.to(dtype), sin.to(dtype)

    def uses_fast_path(self, hooks: Hooks | None) -> bool:
        """Inference with nothing traced or edited runs the fused kernels of gpt2lab.fast."""
        return hooks is None and self.fast_path and not self.training

    @property
    def output_weight(self) -> Tensor:
        """W_Uᵀ [V, C]: the token embedding when tied (GPT-2), else ``lm_head.weight``."""
        return self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight

    def final_norm(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        """ln_final(x), or x itself for a model without a final norm (post-norm models)."""
        ln_f = self.transformer.ln_f
        return x if ln_f is None else ln_f(x, hooks)

    def unembed(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        """logits = ln_f(x) @ W_U, W_U = W_Eᵀ when tied (GPT-2). -> [B, T, V]"""
        if self.uses_fast_path(hooks):
            return fast.unembed(self, x)
        logits = self.final_norm(x, hooks) @ self.output_weight.T
        return hook(hooks, "hook_logits", logits)

    def run_blocks(
        self,
        x: Tensor,
        allowed: Tensor | None,
        cache: KVCache | None = None,
        hooks: Hooks | None = None,
        start: int = 0,
        rope: Rope | None = None,
    ) -> Tensor:
        """The residual stream after blocks ``start``..n_layer-1, from x = their input.
        ``rope``: RoPE's (cos, sin) for these positions (``rope_angles``), for rope models."""
        for block in self.transformer.h[start:]:
            x = block(x, allowed, cache, hooks, rope)
        return x

    def forward(
        self,
        ids: Tensor,
        targets: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        hooks: Hooks | None = None,
    ) -> Tensor:
        """Logits for every position of ``ids`` [B, T] -> [B, T, V].

        With ``targets`` [B, T] (the next token at each position), return instead the mean
        cross-entropy loss, computed without materialising the logits (see gpt2lab.loss).

        ``cache``: keys/values of earlier positions (generation); it is extended by T.
        ``attention_mask`` [B, S]: False for padding keys (S = cached + T positions).
        ``positions`` [B, T]: position ids; default cached..cached+T-1 (padding shifts them).
        ``hooks``: functions to read or replace named steps (see gpt2lab.hooks, gpt2lab.trace).
        """
        x = self.hidden_states(
            ids, cache=cache, attention_mask=attention_mask, positions=positions, hooks=hooks
        )
        if targets is not None:
            return next_token_loss(self.final_norm(x, hooks), self.output_weight, targets)
        return self.unembed(x, hooks)

    def hidden_states(
        self,
        ids: Tensor,
        *,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        hooks: Hooks | None = None,
    ) -> Tensor:
        """The residual stream after the last block [B, T, C], before ln_f (see ``forward``).

        In eval mode with no hooks this runs gpt2lab.fast (the same math, fused kernels);
        otherwise every named step in turn.
        """
        if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
            raise UsageError(
                f"ids must be an integer tensor [batch, seq]; got {ids.dtype} {list(ids.shape)}"
            )
        B, T = ids.shape
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < self.config.vocab_size:
            raise UsageError(
                f"token ids must be in [0, {self.config.vocab_size}), the model's vocabulary; "
                f"got {int(ids.min())}..{int(ids.max())}"
            )
        n_past = cache.length if cache is not None else 0
        if n_past + T > self.config.n_positions:
            raise ContextLengthError(
                f"{n_past + T} positions exceed the model's context of {self.config.n_positions}"
            )
        if positions is None:
            positions = torch.arange(n_past, n_past + T, device=ids.device).expand(B, T)
        x = self.embed(ids, positions, hooks)
        rope = self.rope_angles(positions)
        if self.uses_fast_path(hooks):
            x = fast.run_blocks(self, x, cache, attention_mask, rope=rope)
        else:
            allowed = causal_mask(T, n_past, attention_mask, ids.device)
            x = self.run_blocks(x, allowed, cache, hooks, rope=rope)
        if cache is not None:
            cache.advance(T)
        return x

    # --- conveniences -------------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        p = self.transformer.wte.weight
        return KVCache(self.config, batch, max_len or self.config.n_positions, p.device, p.dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by component, plus total: gpt2lab.config.parameter_counts of the config
        (tests/test_architectures_steps.py holds it equal to the parameters built here)."""
        return parameter_counts(self.config)

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    def generate(self, prompt, max_new_tokens: int = 50, **kwargs):
        """New token ids after ``prompt`` (str, ids, or a list of either). See gpt2lab.generate."""
        from .generate import generate

        return generate(self, prompt, max_new_tokens, **kwargs)

    def generate_text(self, prompt, max_new_tokens: int = 50, **kwargs):
        """Like ``generate`` but returns (or, with stream=True, yields) the new text."""
        from .generate import generate_text

        return generate_text(self, prompt, max_new_tokens, **kwargs)

    def run_with_cache(self, prompt, names=None, **kwargs):
        """Run and keep the value of every named step (or those in ``names``): a Trace.
        See gpt2lab.trace."""
        from .trace import run_with_cache

        return run_with_cache(self, prompt, names, **kwargs)

    def run_with_hooks(self, prompt, edits=None, *, fwd_hooks=()) -> Tensor:
        """Logits [B, T, V] of a forward pass with edits applied (or TransformerLens's
        ``fwd_hooks=[(name or filter, fn)]``). See gpt2lab.trace."""
        from .trace import run_with_hooks

        return run_with_hooks(self, prompt, edits, fwd_hooks=fwd_hooks)

    def to_tokens(self, text, *, prepend_bos: bool = False) -> Tensor:
        """Token ids [B, T] of a text or texts; no BOS unless asked. See gpt2lab.prompts."""
        from .prompts import to_tokens

        return to_tokens(self, text, prepend_bos=prepend_bos)

    def to_string(self, ids):
        """The text of ids [T] (a str) or [B, T] (a list). See gpt2lab.prompts."""
        from .prompts import to_string

        return to_string(self, ids)

    def run_to(self, prompt, name: str, names=(), **kwargs):
        """Run up to step ``name`` and pause there; ``.resume()`` runs on. See gpt2lab.trace."""
        from .trace import run_to

        return run_to(self, prompt, name, names, **kwargs)

    def quantize(self, method: str = "int8") -> GPT2:
        """Round the weight matrices to int8 per output channel, in place; returns the model.

        The fast path then reads one byte per weight (see gpt2lab.quantize); the named steps compute
        with the same rounded values, so traces show the quantized model.
        """
        quantize_model(self, method)
        return self

    def save(self, path: str | Path) -> Path:
        """Write a Hugging Face compatible folder (config.json, model.safetensors, tokenizer)."""
        from .weights import save_pretrained

        return save_pretrained(self, path)


# --- modes ------------------------------------------------------------------------------------
@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block, then the mode the model had before.

    Looking into or sampling from a model in the middle of training must not leave it in eval
    mode, nor switch a model the caller put in eval mode back to training.
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients, restoring the model's mode afterwards."""
    with eval_mode(model), torch.no_grad():
        yield
