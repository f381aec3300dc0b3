"""ids -> embeddings -> n_layer blocks -> ln_f -> logits: GPT-2 as the paper and OpenAI wrote it.

Shapes: B = batch, T = new positions, S = all positions attended to (past + new), C = n_embd,
H = n_head, D = C / H (head size), V = vocab_size.

Every step of a block is a small function below, in the order data flows through it:

    x ─ln_1─▶ q,k,v ─▶ scores ─mask─▶ softmax ─▶ z = pattern·v ─▶ attn_out ─(+x)─▶ resid_mid
    resid_mid ─ln_2─▶ mlp_pre ─gelu─▶ mlp_post ─▶ mlp_out ─(+resid_mid)─▶ resid_post

Each arrow's result passes through ``hook(hooks, name, value)`` under its TransformerLens name
(``blocks.0.attn.hook_pattern``; see gpt2lab.hooks), where a trace reads it or an edit replaces
it, in TransformerLens's layout: q, k, v and z [B, T, H, D], scores and pattern [B, H, T, S].
Without hooks that call returns the value untouched.

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
from .config import GPT2Config
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


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """y = x @ W + b with W stored [in, out]. [..., in] -> [..., out]"""
    return x @ weight + bias


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """[B, T, C] -> [B, T, H, D]: each head gets its own D-wide slice of the channels."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head)


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


class Linear(nn.Module):
    """A linear layer stored [in, out] (OpenAI's "Conv1D" layout): y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


class Attention(nn.Module):
    """Causal multi-head self-attention."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.layer = layer
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)  # W_Q, W_K, W_V side by side
        self.c_proj = Linear(config.n_embd, config.n_embd)  # W_O
        self.dropout = config.dropout
        self.prefix = f"blocks.{layer}.attn."

    def forward(
        self, x: Tensor, allowed: Tensor | None, cache: KVCache | None, hooks: Hooks | None = None
    ) -> Tensor:
        """z of every head [B, T, H, D] for the normalized input x [B, T, C]."""
        name = self.prefix
        q, k, v = self.c_attn(x).split(x.size(-1), dim=-1)  # [B, T, C] each
        q = hook(hooks, name + "hook_q", split_heads(q, self.n_head))  # [B, T, H, D]
        k = hook(hooks, name + "hook_k", split_heads(k, self.n_head))
        v = hook(hooks, name + "hook_v", split_heads(v, self.n_head))
        if cache is not None:  # the cache keeps [B, H, S, D], the fast path's layout
            k, v = cache.update(self.layer, k.transpose(1, 2), v.transpose(1, 2))
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, S, H, D]
        scores = hook(hooks, name + "hook_unmasked_scores", attention_scores(q, k))
        scores = hook(hooks, name + "hook_attn_scores", apply_mask(scores, allowed))
        pattern = hook(hooks, name + "hook_pattern", softmax(scores))
        pattern = F.dropout(pattern, self.dropout, self.training)
        return hook(hooks, name + "hook_z", weighted_values(pattern, v))

    def project(self, z: Tensor) -> Tensor:
        """attn_out = concat of the heads' z @ W_O + b_O. [B, T, H, D] -> [B, T, C]"""
        return F.dropout(self.c_proj(merge_heads(z)), self.dropout, self.training)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.prefix = f"blocks.{layer}.mlp."

    def forward(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        pre = hook(hooks, self.prefix + "hook_pre", self.c_fc(x))  # [B, T, 4C]
        post = hook(hooks, self.prefix + "hook_post", gelu(pre))
        return F.dropout(self.c_proj(post), self.dropout, self.training)


class Block(nn.Module):
    """One pre-LayerNorm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(·))."""

    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = LayerNorm(config.n_embd, eps, name=f"blocks.{layer}.ln1")
        self.attn = Attention(config, layer)
        self.ln_2 = LayerNorm(config.n_embd, eps, name=f"blocks.{layer}.ln2")
        self.mlp = MLP(config, layer)
        self.prefix = f"blocks.{layer}."

    def forward(
        self,
        x: Tensor,
        allowed: Tensor | None,
        cache: KVCache | None,
        hooks: Hooks | None = None,
    ) -> Tensor:
        """resid_post [B, T, C] of the block for its input resid_pre [B, T, C]."""
        name = self.prefix
        resid_pre = hook(hooks, name + "hook_resid_pre", x)
        z = self.attn(self.ln_1(resid_pre, hooks), allowed, cache, hooks)
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
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # position embeddings
        self.h = Blocks(Block(config, i) for i in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon, "ln_final")


class GPT2(nn.Module):
    """GPT-2 language model. ``model(ids)`` maps LongTensor [B, T] to float logits [B, T, V]."""

    def __init__(self, config: GPT2Config, tokenizer: Tokenizer | None = None) -> None:
        super().__init__()
        config.check_supported()  # a switch the steps below do not implement yet: one clear line
        self.config = config
        self.tokenizer = tokenizer
        self.transformer = Transformer(config)
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
        """x₀ = W_E[ids] + W_P[positions]: token embedding plus learned position embedding."""
        tok = hook(hooks, "hook_embed", self.transformer.wte(ids))
        pos = hook(hooks, "hook_pos_embed", self.transformer.wpe(positions))
        return F.dropout(tok + pos, self.config.dropout, self.training)

    def uses_fast_path(self, hooks: Hooks | None) -> bool:
        """Inference with nothing traced or edited runs the fused kernels of gpt2lab.fast."""
        return hooks is None and self.fast_path and not self.training

    def unembed(self, x: Tensor, hooks: Hooks | None = None) -> Tensor:
        """logits = ln_f(x) @ W_Eᵀ: the output layer is the (tied) token embedding. -> [B, T, V]"""
        if self.uses_fast_path(hooks):
            return fast.unembed(self, x)
        logits = self.transformer.ln_f(x, hooks) @ self.transformer.wte.weight.T
        return hook(hooks, "hook_logits", logits)

    def run_blocks(
        self,
        x: Tensor,
        allowed: Tensor | None,
        cache: KVCache | None = None,
        hooks: Hooks | None = None,
        start: int = 0,
    ) -> Tensor:
        """The residual stream after blocks ``start``..n_layer-1, from x = their input."""
        for block in self.transformer.h[start:]:
            x = block(x, allowed, cache, hooks)
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
            h = self.transformer.ln_f(x, hooks)
            return next_token_loss(h, self.transformer.wte.weight, targets)
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
        if self.uses_fast_path(hooks):
            x = fast.run_blocks(self, x, cache, attention_mask)
        else:
            x = self.run_blocks(x, causal_mask(T, n_past, attention_mask, ids.device), cache, hooks)
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
        """Parameters by component (the output layer is the tied token embedding), plus total."""
        groups = {
            "token embedding wte (= output layer)": ("wte.",),
            "position embedding wpe": ("wpe.",),
            "attention (c_attn, c_proj)": (".attn.",),
            "MLP (c_fc, c_proj)": (".mlp.",),
            "layer norms (ln_1, ln_2, ln_f)": (".ln_1.", ".ln_2.", "ln_f."),
        }
        counts = dict.fromkeys(groups, 0)
        for name, p in self.named_parameters():
            group = next(g for g, keys in groups.items() if any(k in name for k in keys))
            counts[group] += p.numel()
        counts["total"] = self.num_parameters()
        return counts

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
