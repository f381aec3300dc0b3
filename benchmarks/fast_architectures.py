"""Decode speed of the fast path on a LLaMA-style model, and of GPT-2 124M (random weights).

    python benchmarks/fast_architectures.py [--device cpu|cuda] [--new-tokens 32] [--gpt2]

Without ``--gpt2``: a model of SmolLM2-135M's shape (RoPE, RMSNorm, SwiGLU, 3 key/value heads for
9 query heads), a 256-token prompt, batch 1, greedy, median of 5, in float32, bfloat16 and (CPU)
int8 weights, comparing
- SwiGLU's gate and up projections as two matmuls against one [C, 2F] matmul;
- grouped-query attention through SDPA's ``enable_gqa`` against key/value heads copied per
  query head (what a torch without ``enable_gqa`` gets).
With ``--gpt2``: GPT-2 124M's decode (16-token prompt) and 256-token prefill tokens/s, to compare
the fast path's speed on GPT-2 across versions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gpt2lab
from gpt2lab import fast
from gpt2lab.config import GPT2Config
from gpt2lab.model import GPT2

SMOLLM_SHAPE = GPT2Config(
    vocab_size=49152,
    n_positions=2048,
    n_embd=576,
    n_layer=30,
    n_head=9,
    n_kv_head=3,
    n_inner=1536,
    positions="rope",
    norm="rmsnorm",
    activation="swiglu",
    qkv_bias=False,
    attn_out_bias=False,
    mlp_bias=False,
)


def decode_speed(model: GPT2, prompt: list[list[int]], new: int, device: str) -> float:
    """Median tokens/s of 5 greedy generations of ``new`` tokens."""

    def run() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(prompt, new, greedy=True, stop_at_eos=False)
        if device == "cuda":
            torch.cuda.synchronize()
        return new / (time.perf_counter() - start)

    model.generate(prompt, 4, greedy=True, stop_at_eos=False)  # warm-up, graph recording
    return statistics.median(run() for _ in range(5))


@torch.no_grad()
def set_swiglu(model: GPT2, fused: bool) -> None:
    """Make every layer's gate and up one [C, 2F] kernel (fused) or two kernels."""
    for kernels, block in zip(fast.fast_weights(model).layers, model.transformer.h, strict=True):
        gate, up = block.mlp.c_gate, block.mlp.c_fc
        assert gate is not None
        if fused:
            both = torch.cat([gate.weight, up.weight], dim=1)
            kernels.mlp_in = fast.SwiGLUIn(fast.kernel_for(both, None, model.quantized))
        else:
            kernels.mlp_in = fast.SwiGLUIn(
                fast.kernel_for(gate.weight, None, model.quantized),
                fast.kernel_for(up.weight, None, model.quantized),
            )
    model.fast_state.decoder = None  # a recorded graph holds the old kernels


def llama_style(device: str, new: int) -> None:
    torch.manual_seed(0)
    prompt = [list(range(100, 356))]
    models = {"float32": lambda: GPT2(SMOLLM_SHAPE).eval().to(device)}
    models["bfloat16"] = lambda: GPT2(SMOLLM_SHAPE).eval().to(device).to(torch.bfloat16)
    if device == "cpu":
        models["int8"] = lambda: GPT2(SMOLLM_SHAPE).eval().quantize("int8")
    for label, make in models.items():
        model = make()
        speeds: dict[str, list[float]] = {}
        for _ in range(2):  # alternate the variants: a drifting machine favours none
            for fused in (False, True):
                set_swiglu(model, fused)
                name = "SwiGLU one matmul" if fused else "SwiGLU two matmuls"
                speeds.setdefault(name, []).append(decode_speed(model, prompt, new, device))
            for groups in (True, False):
                fast.SDPA_GROUPS = groups
                model.fast_state.decoder = None
                name = "GQA enable_gqa" if groups else "GQA copied heads"
                speeds.setdefault(name, []).append(decode_speed(model, prompt, new, device))
            fast.SDPA_GROUPS = torch.__version__ >= "2.5"
        row = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in speeds.items())
        print(f"{device} {label} decode tokens/s: {row}", flush=True)


def gpt2(device: str, new: int) -> None:
    torch.manual_seed(0)
    config = gpt2lab.preset("gpt2")
    prompt = [list(range(464, 480))]
    long = torch.randint(0, config.vocab_size, (1, 256), device=device)
    models = {"float32": lambda: GPT2(config).eval().to(device)}
    models["bfloat16"] = lambda: GPT2(config).eval().to(device).to(torch.bfloat16)
    models["int8"] = lambda: GPT2(config).eval().to(device).quantize("int8")
    for label, make in models.items():
        model = make()
        decode = decode_speed(model, prompt, new, device)
        with torch.no_grad():
            model(long)
            times = []
            for _ in range(3):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(long)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        prefill = 256 / statistics.median(times)
        print(
            f"gpt2 {device} {label}: decode {decode:.1f} tokens/s, prefill {prefill:.0f} tokens/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--gpt2", action="store_true", help="GPT-2 124M's speeds instead")
    args = parser.parse_args()
    (gpt2 if args.gpt2 else llama_style)(args.device, args.new_tokens)


if __name__ == "__main__":
    main()
