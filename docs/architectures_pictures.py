"""Draw the pictures of docs/architectures.md from the model's own step functions: positions
(learned, sinusoidal, RoPE), RoPE's scores, LayerNorm against RMSNorm, the MLP's activations and
SwiGLU's gate, grouped-query attention and what it saves in the KV cache.

    python docs/architectures_pictures.py     # writes docs/images/architectures_*.png

Runs offline in seconds (the learned positions are those of the bundled ``tiny``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

import gpt2lab
from gpt2lab.config import kv_cache_bytes_per_token, parameter_counts, preset
from gpt2lab.model import (
    apply_rope,
    gelu,
    gelu_exact,
    layer_norm,
    relu,
    rms_norm,
    rope_angles,
    rope_frequencies,
    silu,
    sinusoidal_positions,
    swiglu,
)
from gpt2lab.viz.plots import save

IMAGES = Path(__file__).resolve().parent / "images"
POSITIONS, DIMS = 128, 64  # of the position tables drawn


def positions() -> Figure:
    """Learned W_P (tiny's), the fixed sinusoids, and RoPE turning one pair of q by position."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1, 1.05]})
    learned = gpt2lab.load("tiny").transformer.wpe.weight[:POSITIONS, :DIMS].detach()
    fixed = sinusoidal_positions(torch.arange(POSITIONS), DIMS)
    for ax, table, title in (
        (axes[0], learned, "learned (GPT-2): W_P[pos], trained\n(tiny's first 64 channels)"),
        (
            axes[1],
            fixed,
            "sinusoidal (2017): PE[pos, 2i] = sin(pos / 10000^(2i/C))\n"
            "PE[pos, 2i+1] = cos(...), fixed",
        ),
    ):
        limit = float(table.abs().max())
        ax.imshow(table.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xlabel("position")
        ax.set_ylabel("channel")
        ax.set_title(title, fontsize=9)
    # RoPE: nothing is added to x; q (and k) of each head are turned, pair i by pos · θ^(-2i/d)
    ax = axes[2]
    d = 16
    inv_freq = rope_frequencies(d, 10000.0)
    pos = torch.arange(8)
    cos, sin = rope_angles(pos[None], inv_freq)  # [1, 8, d]
    q = torch.zeros(1, 8, 1, d)
    q[..., 0], q[..., d // 2] = 1.0, 0.0  # pair 0: (dim 0, dim d/2), the fastest
    q[..., 2], q[..., 2 + d // 2] = 0.7, 0.0  # pair 2: slower
    turned = apply_rope(q, cos, sin)[0, :, 0]  # [8, d]
    colours = plt.get_cmap("viridis")(torch.linspace(0, 0.9, 8).numpy())
    for p in range(8):
        for i, style in ((0, "-"), (2, "--")):
            x, y = float(turned[p, i]), float(turned[p, i + d // 2])
            ax.annotate(
                "",
                (x, y),
                (0, 0),
                arrowprops={"arrowstyle": "->", "color": colours[p], "ls": style},
            )
        ax.text(1.08 * float(turned[p, 0]), 1.08 * float(turned[p, d // 2]), str(p), fontsize=8)
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_title(
        "RoPE: q and k turned by position, nothing added\n"
        "pair 0 (solid, 1 rad/pos), pair 2 (dashed, slower); label = position",
        fontsize=9,
    )
    fig.tight_layout()
    plt.close(fig)
    return fig


def rope_scores() -> Figure:
    """The score of one query vector against one key vector placed at every pair of positions:
    with RoPE it depends only on the offset n - m (constant diagonals); with positions added to
    x it depends on both."""
    gen = torch.Generator().manual_seed(0)
    d, n = 32, 48
    q, k = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    pos = torch.arange(n)
    cos, sin = rope_angles(pos[None], rope_frequencies(d, 10000.0))
    rq = apply_rope(q.expand(1, n, 1, d), cos, sin)[0, :, 0]
    rk = apply_rope(k.expand(1, n, 1, d), cos, sin)[0, :, 0]
    pe = sinusoidal_positions(pos, d)
    added = (q + pe) @ (k + pe).T
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, scores, title in (
        (axes[0], rq @ rk.T, "RoPE: q_m · k_n depends on n − m only"),
        (axes[1], added, "added positions: (q + p_m) · (k + p_n)"),
    ):
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        shown = scores.masked_fill(~causal, float("nan"))
        ax.imshow(shown, cmap="viridis")
        ax.set_xlabel("key position n")
        ax.set_ylabel("query position m")
        ax.set_title(title, fontsize=10)
    fig.suptitle("the same q and k vectors at every pair of positions (causal half)", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def norms() -> Figure:
    """One vector with a mean far from 0, after LayerNorm and after RMSNorm (gain 1, no bias)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, generator=gen) + 1.5
    ones, zeros = torch.ones(16), torch.zeros(16)
    rows = (
        (x, f"x: mean {x.mean():.2f}, rms {x.pow(2).mean().sqrt():.2f}"),
        (layer_norm(x, ones, zeros, 1e-5), "LayerNorm: (x − mean) / std: mean 0, std 1"),
        (rms_norm(x, ones, 1e-5), "RMSNorm: x / rms(x): rms 1, the mean stays (no centring)"),
    )
    fig, axes = plt.subplots(3, 1, figsize=(7, 5.2), sharex=True, sharey=True)
    for ax, (values, title) in zip(axes, rows):
        ax.bar(range(16), values, color=["tab:blue" if v >= 0 else "tab:red" for v in values])
        ax.axhline(float(values.mean()), color="black", lw=1, ls="--")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xlabel("channel (dashed: the mean)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def mlp() -> Figure:
    """The activations (GELU tanh and erf, ReLU, SiLU) and SwiGLU's gate: silu(a) · b."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = torch.linspace(-4, 3, 400)
    for fn, label in (
        (relu, "ReLU (2017)"),
        (gelu, "GELU, tanh form (GPT-1, GPT-2)"),
        (gelu_exact, "GELU, erf (covers the tanh form)"),
        (silu, "SiLU = x·σ(x) (SwiGLU's gate)"),
    ):
        axes[0].plot(x, fn(x), label=label)
    axes[0].set_title("one input: act(x @ W_in)", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    grid = torch.linspace(-3, 3, 121)
    gate, up = torch.meshgrid(grid, grid, indexing="xy")
    out = swiglu(gate, up)
    limit = float(out.abs().max())
    shown = axes[1].imshow(
        out, origin="lower", extent=(-3, 3, -3, 3), cmap="RdBu_r", vmin=-limit, vmax=limit
    )
    axes[1].contour(grid, grid, out, levels=[0], colors="black", linewidths=0.8)
    axes[1].set_xlabel("gate = x @ W_gate")
    axes[1].set_ylabel("up = x @ W_in")
    axes[1].set_title("SwiGLU: silu(gate) · up, two inputs per hidden unit", fontsize=10)
    fig.colorbar(shown, ax=axes[1])
    fig.tight_layout()
    plt.close(fig)
    return fig


def gqa() -> Figure:
    """Which key/value head each query head reads (h // (H/K)), and the KV cache per token of
    known models."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    ax = axes[0]
    H = 8
    for row, (K, name) in enumerate(
        ((8, "multi-head (GPT-2)"), (2, "grouped-query, K = 2"), (1, "multi-query, K = 1"))
    ):
        y = 2 - row
        for h in range(H):
            kv = h // (H // K)
            kx = (kv + 0.5) * H / K - 0.5
            ax.plot([h, kx], [y + 0.35, y - 0.05], color="tab:gray", lw=0.8)
            ax.scatter([h], [y + 0.4], s=90, color="tab:blue", zorder=3)
        ax.scatter(
            [(kv + 0.5) * H / K - 0.5 for kv in range(K)],
            [y - 0.1] * K,
            s=260,
            marker="s",
            color="tab:orange",
            zorder=3,
        )
        ax.text(-1.0, y + 0.15, name, ha="right", va="center", fontsize=9)
    ax.scatter([], [], color="tab:blue", label="query heads (H = 8)")
    ax.scatter([], [], marker="s", color="tab:orange", label="key/value heads (kept in the cache)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8, frameon=False)
    ax.set_xlim(-6.5, 8)
    ax.set_ylim(-0.5, 2.7)
    ax.axis("off")
    ax.set_title("query head h reads key/value head h // (H/K)", fontsize=10)
    ax = axes[1]
    names = ["gpt2", "gpt2-xl", "smollm2-135m", "llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b"]
    kv = [kv_cache_bytes_per_token(preset(n), 2) / 1024 for n in names]
    bars = ax.barh(names, kv, color=["tab:blue"] * 2 + ["tab:orange"] * 4)
    for bar, n in zip(bars, names):
        billions = parameter_counts(preset(n))["total"] / 1e9
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {billions:.2g}B parameters",
            va="center",
            fontsize=8,
        )
    ax.invert_yaxis()
    ax.set_xlim(0, max(kv) * 1.45)
    ax.set_xlabel("KV cache per token, KiB (bfloat16)")
    ax.set_title("what the cache keeps per token: 2 · layers · K · head size", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    plt.close(fig)
    return fig


PICTURES = {
    "architectures_positions.png": positions,
    "architectures_rope_scores.png": rope_scores,
    "architectures_norms.png": norms,
    "architectures_mlp.png": mlp,
    "architectures_gqa.png": gqa,
}


def main() -> None:
    for name, draw in PICTURES.items():
        print(save(draw(), IMAGES / name, dpi=110))


if __name__ == "__main__":
    main()
