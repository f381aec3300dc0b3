"""The fast path: model.py's forward pass, fused for inference, used whenever no step is traced.

Same math as the named steps, in fewer and bigger kernels (shown for GPT-2; every switch of
GPT2Config has its fused form, chosen once per model in ``fast_weights``):

    x ─F.layer_norm─▶ one matmul for q,k,v ─▶ scaled_dot_product_attention ─▶ matmul (+x)
      ─F.layer_norm─▶ matmul ─F.gelu(tanh)─▶ matmul (+x)

- RMSNorm is F.rms_norm; post-norm (GPT-1) normalizes after each residual add instead of before;
  without a final norm the unembedding reads the residual stream as it is.
- RoPE rotates q and k together, with the (cos, sin) that GPT2.rope_angles computed once for
  the whole forward pass; sinusoidal positions are added in ``GPT2.embed``, before this path.
- Grouped-query attention keeps K key/value heads in the cache, and SDPA serves each group of
  query heads from its shared head (``enable_gqa``) without copying them (faster: see
  docs/benchmarks.md).
- SwiGLU's gate and up projections are one matmul [C, 2F] where the kernel makes its own copy
  of the weights anyway (prepacked, int8), and two matmuls of the parameters otherwise: one
  matmul is faster, but a float32 or GPU copy of both matrices would double their memory.
- A missing bias is skipped; an untied output layer is read from ``lm_head``.

scaled_dot_product_attention never stores the [T, S] pattern (flash attention on CPU and GPU),
and keys/values go into the model's preallocated KVCache. Each weight matrix is read in the form
its kernel reads fastest (``kernel_for``):

- float32 on a CPU: the parameter itself, through oneDNN's linear for the few rows of decoding
  and one addmm for a prompt (``OneDNN``);
- anything on a GPU: the parameter itself, [in, out], one addmm;
- bfloat16/float16 on a CPU: a copy prepacked for oneDNN, whose bfloat16 matrix-vector products
  are faster than PyTorch's default ones; on CPUs for which oneDNN has no such kernels, an
  [out, in] copy that PyTorch's own matrix-vector kernel reads fast (docs/benchmarks.md);
- ``model.quantize("int8")``: one signed byte per weight and one scale per output channel
  (gpt2lab.quantize), multiplied by torch's weight-only int8 kernel in bfloat16 on CPUs for a
  few rows, and for many rows by bfloat16 or (without bfloat16 kernels) float32 weights
  rounded the same way (``Int8``). On a
  GPU the rounded weights are multiplied as the parameters store them (float32 or bfloat16):
  torch's CUDA int8 kernel was much slower there than a bfloat16 matrix multiply
  (docs/benchmarks.md).

Prepacked, transposed and int8 copies are made on first use and remade when a parameter
changes (PyTorch counts in-place writes in ``tensor._version``). On a GPU, generation records
one decoding step as a CUDA graph (``StaticDecoder``) and replays it for every token. Both are
kept in the model's ``fast_state`` (``FastState``). ``model.fast_path = False`` turns this path
off; tests/test_fast.py and tests/test_fast_architectures.py hold it equal to the named-step path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ContextLengthError
from .kv_cache import KVCache, causal_mask

# gpt2lab.quantize holds the int8 rule; its public names stay importable from here too.
from .quantize import QUANTIZATIONS as QUANTIZATIONS
from .quantize import dequantize_int8, quantize_int8
from .quantize import quantize_model as quantize_model

if TYPE_CHECKING:
    from .config import GPT2Config
    from .model import GPT2, MLP, Linear

Kernel = Callable[[Tensor], Tensor]  # [N, in] -> [N, out]


# --- kernels ----------------------------------------------------------------------------------
class Dense:
    """y = x @ W + b with W [in, out] used as it is: one addmm (autograd works)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return x @ self.weight
        return torch.addmm(self.bias, x, self.weight)


class OneDNN(Dense):
    """y = x @ W + b on the parameter itself, no copy (CPU, float32, inference): for a few rows
    (decoding) oneDNN's linear, which reads W [in, out] as the [out, in] matrix it wants; from
    ``MANY_ROWS`` rows on (a prompt) Dense's addmm, which is faster there (docs/benchmarks.md).

    Inference only: oneDNN's linear has no gradient.
    """

    MANY_ROWS = 64

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__(weight, bias)
        self.weight_t = weight.t()  # [out, in], a view

    def __call__(self, x: Tensor) -> Tensor:
        if x.shape[0] >= self.MANY_ROWS:
            return super().__call__(x)
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), self.weight_t, self.bias, "none", [], ""
        )


class Prepacked:
    """y = x @ W + b through oneDNN with W prepacked once into its blocked layout (CPU, bf16/fp16).

    Inference only: the packed copy has no gradient.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), 1)
        self.bias = bias

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class Transposed:
    """y = x @ W + b by F.linear on a copy of W laid out [out, in] (CPU, bfloat16/float16 where
    oneDNN has no kernels for them): PyTorch's own reduced-precision matrix-vector kernel reads
    that layout many times faster than addmm reads [in, out] (docs/benchmarks.md). A weight
    that already is [out, in] underneath (the tied unembedding) is used without a copy.

    Inference only: the copy has no gradient.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight_t = weight.t().contiguous()  # [out, in]
        self.bias = bias

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_t, self.bias)


class Int8:
    """y = (x @ qᵀ) · s + b with q int8 [out, in] (CPU).

    For a few rows (decoding) torch's weight-only int8 kernel, which multiplies in bfloat16.
    Its cost grows with the rows, so from ``many_rows`` rows on (a batch, a prompt) a kernel of
    the same rounded weights takes over: where oneDNN multiplies bfloat16 natively, a prepacked
    bfloat16 copy, made on first need and kept; where it does not (PyTorch would convert every
    element), q · s in float32, made for the call and dropped, so that no float32 copy stays
    (docs/benchmarks.md). Activations of other dtypes are cast around the kernels.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.q, self.scale = quantize_int8(weight.t())
        self.bias = bias
        self.native_bf16 = onednn_has_kernels(torch.bfloat16)
        self.many_rows = 5 if self.native_bf16 else 80  # where the two cross (docs)
        self.prepacked: Kernel | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if x.shape[0] < self.many_rows:
            y = torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scale)
        elif self.native_bf16:
            if self.prepacked is None:
                rounded = dequantize_int8(self.q, self.scale).t().to(torch.bfloat16)  # [in, out]
                self.prepacked = kernel_for(rounded, None, None)
            y = self.prepacked(x.to(torch.bfloat16))
        else:
            y = F.linear(x.float(), dequantize_int8(self.q, self.scale))
        if self.bias is None:
            return y.to(x.dtype)
        return torch.add(self.bias, y).to(x.dtype)  # one op where bias and x share a dtype


# oneDNN's float32 linear was measured on x86-64 only (docs/benchmarks.md).
ONEDNN_FLOAT32 = (
    torch.backends.mkldnn.is_available()
    and torch.backends.cpu.get_cpu_capability().startswith("AVX")
)


def onednn_has_kernels(dtype: torch.dtype) -> bool:
    """Whether oneDNN has matrix kernels for ``dtype`` (bfloat16 or float16) on this CPU;
    without them PyTorch converts every element (docs/benchmarks.md)."""
    mkldnn = torch.ops.mkldnn
    if dtype == torch.bfloat16:
        return bool(mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float16 and bool(mkldnn._is_mkldnn_fp16_supported())


def int8_activations(device: torch.device | str) -> torch.dtype:
    """The activation dtype that decodes fastest with int8 weights on ``device``: bfloat16 where
    it is multiplied natively (a GPU, or a CPU that oneDNN has bfloat16 kernels for), float32
    where every bfloat16 norm and activation would be emulated (docs/benchmarks.md)."""
    if torch.device(device).type != "cpu" or onednn_has_kernels(torch.bfloat16):
        return torch.bfloat16
    return torch.float32


def kernel_kind(
    weight: Tensor, quantized: str | None
) -> type[Dense | Prepacked | Transposed | Int8]:
    """Which kernel reads W [in, out] fastest (see the module docstring); Prepacked, Transposed
    and Int8 keep a copy of the weights of their own."""
    on_cpu = weight.device.type == "cpu"
    if quantized == "int8" and on_cpu:
        return Int8
    if on_cpu and weight.dtype == torch.float32 and ONEDNN_FLOAT32:
        return OneDNN
    if on_cpu and weight.dtype in (torch.bfloat16, torch.float16):
        return Prepacked if onednn_has_kernels(weight.dtype) else Transposed
    return Dense


def kernel_for(weight: Tensor, bias: Tensor | None, quantized: str | None) -> Kernel:
    """The fastest kernel for y = x @ W + b, W [in, out] (see the module docstring)."""
    return kernel_kind(weight, quantized)(weight, bias)


# --- the model's weights, in kernel form ------------------------------------------------------
NormWeights = tuple[Tensor, Tensor | None]  # gain g, bias b (None for RMSNorm)
Norm = Callable[[Tensor, NormWeights], Tensor]  # [N, C] -> [N, C]


def norm_for(config: GPT2Config) -> Norm:
    """The fused norm of ``config``: F.layer_norm, or RMSNorm x / sqrt(mean(x²) + ε) · g."""
    eps = config.layer_norm_epsilon
    if config.norm == "layernorm":
        return lambda x, w: F.layer_norm(x, w[0].shape, w[0], w[1], eps)
    if hasattr(F, "rms_norm"):  # torch >= 2.4
        return lambda x, w: F.rms_norm(x, w[0].shape, w[0], eps)
    return lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w[0]


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


class MLPIn:
    """mlp_post = act(x @ W_in + b_in): the MLP up to its output projection. [N, C] -> [N, F]"""

    def __init__(self, c_fc: Kernel, activation: Callable[[Tensor], Tensor]) -> None:
        self.c_fc, self.activation = c_fc, activation

    def __call__(self, x: Tensor) -> Tensor:
        return self.activation(self.c_fc(x))


class SwiGLUIn:
    """mlp_post = silu(x @ W_gate) · (x @ W_in). [N, C] -> [N, F]

    ``up`` None: ``gate`` is one kernel of [W_gate | W_in] ([C, 2F]), one matmul for both.
    """

    def __init__(self, gate: Kernel, up: Kernel | None = None) -> None:
        self.gate, self.up = gate, up

    def __call__(self, x: Tensor) -> Tensor:
        if self.up is not None:
            return F.silu(self.gate(x)) * self.up(x)
        gate, up = self.gate(x).chunk(2, dim=-1)
        return F.silu(gate) * up


@dataclass
class LayerKernels:
    ln_1: NormWeights
    c_attn: Kernel
    attn_proj: Kernel
    ln_2: NormWeights
    mlp_in: MLPIn | SwiGLUIn
    mlp_proj: Kernel


@dataclass
class FastWeights:
    key: tuple
    layers: list[LayerKernels]
    norm: Norm
    ln_f: NormWeights | None  # None without a final norm
    unembed: Kernel


@dataclass
class FastState:
    """What the fast path keeps between calls; each GPT2 holds one as ``model.fast_state``.

    A plain attribute (not a module, parameter or buffer), so it is never in ``state_dict()``
    and ``.to()`` leaves it alone. Nothing in it goes stale: ``fast_weights`` remakes the kernels
    when any parameter is replaced (as ``.to()`` does) or written, and ``static_decoder`` makes a
    new decoder when the kernels change.
    """

    weights: FastWeights | None = None  # the kernels of the current parameters
    decoder: StaticDecoder | None = None  # the last decoder, lent again to the next generation


def _key(model: GPT2, packed: bool) -> tuple:
    """Changes when any parameter is replaced or written in place, or the mode changes.

    Checked twice per decoded token, so it walks the modules' own parameter dicts:
    ``model.parameters()`` (named_modules, a set of seen ids) costs a few times more.
    """
    versions: list[tuple[int, int]] = []
    modules: list[torch.nn.Module] = [model]
    while modules:
        module = modules.pop()
        versions += (
            (p.data_ptr(), p._version) for p in module._parameters.values() if p is not None
        )
        modules += (m for m in module._modules.values() if m is not None)
    return (packed, model.quantized, tuple(versions))


def _detached(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def fast_weights(model: GPT2) -> FastWeights:
    """The model's weights as kernels, made once and remade after any parameter changes.

    With gradients enabled every kernel is Dense (the parameters themselves), so autograd works.
    """
    packed = not torch.is_grad_enabled()
    key = _key(model, packed)
    cached = model.fast_state.weights
    if cached is not None and cached.key == key:
        return cached

    def kernel(weight: Tensor, bias: Tensor | None) -> Kernel:
        """The kernel of x @ W + b, W [in, out]."""
        if not packed:
            return Dense(weight, bias)
        return kernel_for(weight.detach(), _detached(bias), model.quantized)

    def make(linear: Linear) -> Kernel:
        return kernel(linear.weight, linear.bias)

    def mlp_in(mlp: MLP) -> MLPIn | SwiGLUIn:
        if model.config.activation != "swiglu":
            return MLPIn(make(mlp.c_fc), ACTIVATIONS[model.config.activation])
        assert mlp.c_gate is not None  # swiglu has a gate
        if not packed or issubclass(kernel_kind(mlp.c_gate.weight, model.quantized), Dense):
            return SwiGLUIn(make(mlp.c_gate), make(mlp.c_fc))  # no copies: keep them apart
        gate_bias, up_bias = mlp.c_gate.bias, mlp.c_fc.bias
        bias = None if gate_bias is None or up_bias is None else torch.cat([gate_bias, up_bias])
        return SwiGLUIn(kernel(torch.cat([mlp.c_gate.weight, mlp.c_fc.weight], dim=1), bias))

    t = model.transformer
    layers = [
        LayerKernels(
            ln_1=(b.ln_1.weight, b.ln_1.bias),
            c_attn=make(b.attn.c_attn),
            attn_proj=make(b.attn.c_proj),
            ln_2=(b.ln_2.weight, b.ln_2.bias),
            mlp_in=mlp_in(b.mlp),
            mlp_proj=make(b.mlp.c_proj),
        )
        for b in t.h
    ]
    ln_f = None if t.ln_f is None else (t.ln_f.weight, t.ln_f.bias)
    unembed = kernel(model.output_weight.t(), None)  # [V, C]: wte, or lm_head when untied
    weights = FastWeights(key, layers, norm_for(model.config), ln_f, unembed)
    model.fast_state.weights = weights
    return weights


# --- the forward pass -------------------------------------------------------------------------
def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE on the first R dims of each head: x·cos + rotate_half(x)·sin (Hugging Face's
    rotate-half pairs (i, i + R/2)); the other dims pass unchanged. model.apply_rope's math, on
    q and k together in the fast path's [B, heads, T, D] layout.
    x [B, n, T, D], cos and sin [B, 1, T, R] -> [B, n, T, D]"""
    R = cos.shape[-1]
    x_rot = x[..., :R]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = x_rot * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rotated if x.shape[-1] == R else torch.cat((rotated, x[..., R:]), dim=-1)


def run_blocks(
    model: GPT2,
    x: Tensor,
    cache: KVCache | None,
    attention_mask: Tensor | None,
    slot: Tensor | None = None,
    rope: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The residual stream after every block [B, T, C], for the embeddings x [B, T, C].

    ``cache``: keys/values of earlier positions; this call's are written into it.
    ``attention_mask`` [B, S]: False for padding keys (as in GPT2.forward).
    ``slot`` (StaticDecoder): one new position (T = 1) written at the cache index this tensor
    [1] holds; attention then reads all ``cache.max_len`` slots, hiding those after ``slot`` and
    the padding (``attention_mask``, [B, max_len], is required then): no shape depends on the
    length.
    ``rope``: (cos, sin) [B, T, rotary_dim] of these positions (GPT2.rope_angles), for RoPE.
    """
    config = model.config
    B, T, C = x.shape
    H, K, D = config.n_head, config.n_key_value_heads, config.head_dim
    n_past = cache.length if cache is not None else 0
    # The common cases need no mask tensor: a fresh causal prompt, or one new token seeing all.
    is_causal = attention_mask is None and n_past == 0 and T > 1 and slot is None
    mask = None
    if slot is not None:
        assert cache is not None and attention_mask is not None  # required with a slot
        allowed = (torch.arange(cache.max_len, device=x.device) <= slot) & attention_mask
        # Additive (0 / -inf) once here: given booleans, SDPA would convert them in every layer.
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
        mask = mask.masked_fill_(~allowed, float("-inf"))[:, None, None]  # [B, 1, 1, max_len]
    elif not is_causal and (attention_mask is not None or T > 1):
        mask = causal_mask(T, n_past, attention_mask, x.device)
    cos_sin = None if rope is None else (rope[0][:, None], rope[1][:, None])  # [B, 1, T, R]
    weights = fast_weights(model)
    norm, pre = weights.norm, config.norm_position == "pre"
    h = x.reshape(B * T, C)
    for layer, w in enumerate(weights.layers):
        qkv = w.c_attn(norm(h, w.ln_1) if pre else h).view(B, T, H + 2 * K, D).transpose(1, 2)
        qk, v = qkv.split([H + K, K], dim=1)  # [B, H + K, T, D], [B, K, T, D]
        if cos_sin is not None:
            qk = rotate(qk, *cos_sin)
        q, k = qk.split([H, K], dim=1)
        if slot is not None:
            assert cache is not None  # checked above; narrows the type
            k, v = cache.write_at(layer, k, v, slot)
        elif cache is not None:
            k, v = cache.update(layer, k, v)
        z = attend(q, k, v, mask, is_causal)
        h = h + w.attn_proj(z.transpose(1, 2).reshape(B * T, C))
        if not pre:
            h = norm(h, w.ln_1)
        h = h + w.mlp_proj(w.mlp_in(norm(h, w.ln_2) if pre else h))
        if not pre:
            h = norm(h, w.ln_2)
    return h.view(B, T, C)


SDPA_GROUPS = torch.__version__ >= "2.5"  # scaled_dot_product_attention's enable_gqa


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
    """z = softmax(q kᵀ / √D + mask) v, with K key/value heads serving H query heads in groups of
    n = H / K (query head h reads key/value head h // n).
    q [B, H, T, D], k and v [B, K, S, D] -> [B, H, T, D]

    SDPA reads the shared heads in place (``enable_gqa``); a torch without it gets copies of
    them, n of each.
    """
    n = q.shape[1] // k.shape[1]
    groups = {}
    if n > 1 and SDPA_GROUPS:
        groups = {"enable_gqa": True}
    elif n > 1:
        k, v = k.repeat_interleave(n, dim=1), v.repeat_interleave(n, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, **groups)


def unembed(model: GPT2, x: Tensor) -> Tensor:
    """logits = ln_f(x) @ W_outᵀ (W_out = W_E when tied, else lm_head; no ln_f without a
    final norm). [..., C] -> [..., V]"""
    weights = fast_weights(model)
    h = x.reshape(-1, x.shape[-1])
    if weights.ln_f is not None:
        h = weights.norm(h, weights.ln_f)
    return weights.unembed(h).view(*x.shape[:-1], -1)


# --- decoding with fixed shapes: one CUDA graph per token -------------------------------------
_RECORDING = threading.Lock()
_LENDING = threading.Lock()  # makes taking the model's decoder one step, as dict.pop was


class StaticDecoder:
    """One decoding step, a new token per row -> its next-token logits [B, V], in fixed shapes.

    The eager step's shapes grow with the cache and it reads ``cache.length`` in Python; this
    one writes the new keys/values at a position held in a tensor and attends over all
    ``max_len`` slots, hiding those not written yet. With nothing changing between steps but
    the contents of a few tensors, a GPU can record the step's kernels once as a CUDA graph and
    replay them with one launch per token: for GPT-2 on a GPU it is launching some 14 kernels
    per block, not reading the weights, that limits the eager loop (docs/benchmarks.md
    measures the difference). On a CPU the step runs eagerly (tests/test_fast.py holds it equal to
    the eager loop).
    """

    def __init__(self, model: GPT2, batch: int, max_len: int) -> None:
        self.model = model
        self.weights = fast_weights(model)  # keeps the tensors the recorded kernels read alive
        self.cache = model.new_cache(batch, max_len)
        self.cache.k.zero_()  # hidden slots get weight 0, and 0 · NaN would still be NaN
        self.cache.v.zero_()
        device = self.cache.k.device
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros_like(self.ids)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.key_padding = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda":
            self.logits = self._capture()

    @property
    def shape(self) -> tuple[int, int]:
        """(batch, max_len)"""
        batch, max_len = self.key_padding.shape
        return batch, max_len

    def _step(self) -> Tensor:
        x = self.model.embed(self.ids, self.positions)
        rope = self.model.rope_angles(self.positions)  # from the position tensor: graph-safe
        h = run_blocks(self.model, x, self.cache, self.key_padding, slot=self.slot, rope=rope)
        return unembed(self.model, h)[:, -1]

    def _capture(self) -> Tensor:
        """Record ``_step`` as a CUDA graph; returns the logits tensor every replay rewrites."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step()  # warm-up: cuBLAS handles and workspaces are made outside the graph
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # Other threads (a web server's other requests) may decode meanwhile (thread_local), but
        # two recordings at once would not do: each begins by synchronizing the whole GPU.
        with _RECORDING, torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            return self._step()

    def start(self, key_padding: Tensor | None) -> KVCache:
        """Empty the cache for new prompts; ``key_padding`` [B, S <= max_len]: False for padding
        keys. Returns the cache, for the prompt's (eager) forward pass to fill."""
        self.cache.length = 0
        self.key_padding.fill_(True)
        if key_padding is not None:
            self.key_padding[:, : key_padding.shape[1]] = key_padding
        return self.cache

    def __call__(self, token: Tensor, positions: Tensor) -> Tensor:
        """Logits [B, V] after token [B] at positions [B, 1]; the cache grows by one position.

        On a GPU the same tensor is returned (and rewritten) at every step: use it before the
        next call.
        """
        if self.cache.length >= self.cache.max_len:
            raise ContextLengthError(f"the decoder's cache holds {self.cache.max_len} positions")
        self.ids.copy_(token[:, None])
        self.positions.copy_(positions)
        self.slot.fill_(self.cache.length)
        if self.graph is None:
            logits = self._step()
        else:
            self.graph.replay()
            logits = self.logits
        self.cache.advance(1)
        return logits


def decodes_with_graphs(device: torch.device) -> bool:
    """Generation decodes with a StaticDecoder where it records CUDA graphs, i.e. on GPUs; a CPU
    has no launches to save and runs the eager step."""
    return device.type == "cuda"


@contextmanager
def static_decoder(model: GPT2, batch: int, max_len: int) -> Iterator[StaticDecoder]:
    """A StaticDecoder for ``batch`` rows and at least ``max_len`` positions, lent for one
    generation. The model keeps the last one and lends it again while the batch size, the
    rounded length and the weights stay the same, so a graph is recorded once, not per call;
    a generation running meanwhile (an unfinished stream) gets its own."""
    max_len = min(model.config.n_positions, -(-max_len // 128) * 128)  # fewer distinct shapes
    state = model.fast_state
    with _LENDING:  # a generation running meanwhile finds None and makes its own
        decoder, state.decoder = state.decoder, None
    weights = fast_weights(model)
    if decoder is None or decoder.shape != (batch, max_len) or decoder.weights is not weights:
        decoder = None  # free the old one's cache and graph before making the new one
        decoder = StaticDecoder(model, batch, max_len)
    try:
        yield decoder
    finally:
        state.decoder = decoder
