"""Notebook 8: GPT-2 against LLaMA, switch by switch. Build with `python notebooks/build.py 08`
(seconds)."""

# %% [markdown]
# # 8. GPT-2 vs LLaMA
#
# A model of 2024 such as Llama 3 is still GPT-2's decoder: token embeddings, a stack of blocks
# that each add attention and an MLP to a residual stream, and an output layer. Five pieces
# changed:
#
# | | GPT-2 (2019) | LLaMA (2023-) |
# | --- | --- | --- |
# | positions | a learned vector W_P[pos] added to x | q and k **rotated** by position (RoPE) |
# | normalization | LayerNorm: (x − mean) / std · g + b | RMSNorm: x / rms · g |
# | MLP | GELU(x W_in) W_out | SwiGLU: (silu(x W_gate) ⊙ x W_in) W_out |
# | attention | a key/value head per query head | one per group of query heads (GQA) |
# | biases | everywhere | none |
#
# In gpt2lab each is a switch of `GPT2Config`, and the model computes each as a small named step.
# This notebook compares the two on paper, draws the biggest change (positions), runs a small
# LLaMA-style model through the same named steps as GPT-2, and shows what each change did in
# training. It runs in seconds on random weights and the bundled `tiny`.

# %%
import importlib.util
import json
from pathlib import Path

import pandas as pd
import torch
from IPython.display import display

import gpt2lab
from gpt2lab import GPT2
from gpt2lab.config import describe, kv_cache_bytes_per_token, parameter_counts, preset
from gpt2lab.hooks import steps
from gpt2lab.model import apply_rope, rope_angles, rope_frequencies, sinusoidal_positions
from gpt2lab.viz import plots

# %matplotlib inline

torch.manual_seed(0)
torch.set_grad_enabled(False)  # we only look: no gradients
tiny = gpt2lab.load("tiny")  # a GPT-2 trained on stories: its learned positions, its steps
print(f"model: tiny, a GPT-2 of {tiny.num_parameters():,} parameters, and configs for the rest")

# %% [markdown]
# ## 1. The two on paper
#
# `gpt2lab info --model gpt2 --model llama-3.2-1b` prints this table. A preset is a config, so
# nothing is downloaded: the parameters are counted from the shapes. Llama 3.2 1B is ten times
# GPT-2's size, yet its KV cache (what generation keeps per token) is smaller, because its 32
# query heads share 8 key/value heads.


# %%
def info(name: str) -> dict:
    """The rows of `gpt2lab info` for a preset: architecture, parameters, KV cache."""
    config = preset(name)
    counts = {f"parameters: {k}": f"{v:,}" for k, v in parameter_counts(config).items()}
    kv = f"{kv_cache_bytes_per_token(config, 2):,}"
    return {**describe(config), **counts, "KV cache bytes/token (bfloat16)": kv}


pd.DataFrame({name: info(name) for name in ("gpt2", "llama-3.2-1b", "gpt1", "transformer-base")})

# %% [markdown]
# ## 2. Where a token is: learned positions against RoPE
#
# GPT-2 **adds** a learned vector W_P[pos] to each token's embedding: position is part of x from
# the start, and a model cannot read past the last row of W_P. The 2017 Transformer added fixed
# sinusoids instead. LLaMA adds nothing: inside attention, it **rotates** each pair of
# dimensions (i, i + d/2) of q and k by the angle pos · θ^(−2i/d). The left two pictures are the
# tables that GPT-2 and the 2017 Transformer add (tiny's own W_P, trained; the sinusoids, fixed);
# the right one shows RoPE turning one pair of a query vector as its position grows.

# %%
_spec = importlib.util.spec_from_file_location("pictures", "../docs/architectures_pictures.py")
assert _spec is not None and _spec.loader is not None
pictures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pictures)  # the drawings of docs/architectures.md
pictures.positions()

# %% [markdown]
# Rotating both q and k has one consequence that matters: a query at position m and a key at
# position n are turned by m and n times the same angles, so their score depends on **n − m
# only**. The same two vectors placed at (1, 0), (5, 4) and (40, 39) score the same; with a
# position vector added to each, every placement scores differently.

# %%
d = 32
q, k = torch.randn(d), torch.randn(d)
positions = torch.arange(48)
cos, sin = rope_angles(positions[None], rope_frequencies(d, theta=10000.0))
rq = apply_rope(q.expand(1, 48, 1, d), cos, sin)[0, :, 0]  # q at every position 0..47
rk = apply_rope(k.expand(1, 48, 1, d), cos, sin)[0, :, 0]
pe = sinusoidal_positions(positions, d)  # positions added to x instead
pd.DataFrame(
    {
        "query at m, key at n": [f"({m}, {n})" for m, n in ((1, 0), (5, 4), (40, 39), (5, 0))],
        "RoPE: q_m · k_n": [float(rq[m] @ rk[n]) for m, n in ((1, 0), (5, 4), (40, 39), (5, 0))],
        "added: (q + p_m) · (k + p_n)": [
            float((q + pe[m]) @ (k + pe[n])) for m, n in ((1, 0), (5, 4), (40, 39), (5, 0))
        ],
    }
).round(4)

# %% tags=["picture"]
pictures.rope_scores()

# %% [markdown]
# ## 3. A LLaMA-style model, traced with GPT-2's step names
#
# The same shape as `tiny` (6 blocks, 192 wide, 6 heads) with LLaMA's five changes switched on,
# with random weights: RoPE, RMSNorm, SwiGLU at the MLP's parameter count (hidden size
# 2/3 · 4 · 192 = 512), 2 key/value heads for the 6 query heads, no biases. Its steps have the
# names TransformerLens uses, and the ones that are the same in both models mean the same thing.

# %%
llama_like = tiny.config.replace(
    positions="rope",
    norm="rmsnorm",
    activation="swiglu",
    n_inner=512,
    n_kv_head=2,
    qkv_bias=False,
    attn_out_bias=False,
    mlp_bias=False,
)
llama = GPT2(llama_like, tiny.tokenizer)
llama.init_weights(seed=0)
print(f"tiny: {tiny.num_parameters():,} parameters; LLaMA-style: {llama.num_parameters():,}")
print(
    f"KV cache per token (float32): {kv_cache_bytes_per_token(tiny.config):,} bytes "
    f"against {kv_cache_bytes_per_token(llama_like):,}"
)

# %% [markdown]
# Block 0's steps in both, in the order each model computes them, with the shapes their traces
# hold for "Mike is quick. He moves" (6 tokens). RMSNorm has no mean or variance to keep, RoPE
# adds the rotated q and k, SwiGLU's second projection is `hook_pre_linear`, and with grouped-
# query attention k and v have 2 heads where q has 6.

# %%
prompt = "Mike is quick. He moves"
models = {"GPT-2 (tiny)": tiny, "LLaMA-style": llama}
traces = {label: model.run_with_cache(prompt) for label, model in models.items()}
names = {label: [s.name for s in steps(model.config)] for label, model in models.items()}
gpt2_names, merged = names["GPT-2 (tiny)"], []
for name in names["LLaMA-style"]:  # both lists in one order: each model's steps stay in theirs
    if name in gpt2_names:
        merged += [n for n in gpt2_names[: gpt2_names.index(name)] if n not in merged]
    merged.append(name)
merged += [n for n in gpt2_names if n not in merged]
block0 = [
    {"step": name.replace("{L}", "0")}
    | {
        label: tuple(t[name.replace("{L}", "0")].shape) if name in names[label] else "—"
        for label, t in traces.items()
    }
    for name in merged
    if "{L}" in name
]
pd.DataFrame(block0)

# %% [markdown]
# Everything that works on GPT-2 works on it: the attention pattern of a head, the rotated keys,
# a step edited and the model run on. With random weights the pattern is close to uniform over
# the tokens each position may see; each row still sums to 1.

# %%
llama_trace = traces["LLaMA-style"]
pattern = llama_trace["blocks.0.attn.hook_pattern"][0, 0]  # head 0: [query, key]
print("rows sum to 1:", bool(torch.allclose(pattern.sum(-1), torch.ones(6))))
print(
    "rotated k of position 0 = k (angle 0):",
    bool(
        torch.allclose(
            llama_trace["blocks.0.attn.hook_rot_k"][0, 0], llama_trace["blocks.0.attn.hook_k"][0, 0]
        )
    ),
)
pd.DataFrame(pattern.numpy(), index=llama_trace.tokens(), columns=llama_trace.tokens()).round(3)

# %% [markdown]
# ## 4. What each change buys: the ladder
#
# `recipes/ladder/run.py` trains GPT-2, one model per single change (+RoPE, +RMSNorm, +SwiGLU,
# +GQA, −biases, post-LN, sinusoidal) and the LLaMA-style model on the same TinyStories tokens in
# the same order, from the same seed, and records the held-out loss as they learn. Where its
# results are in this copy of the repository (`docs/data/ladder-*.json`), here are the curves and
# the table.

# %%
results = sorted(Path("../docs/data").glob("ladder-*.json"))
for path in results:
    ladder = json.loads(path.read_text())
    curves = {run["label"]: run["curve"] for run in ladder["runs"]}
    title = f"held-out loss, ladder size {ladder['size']}"
    display(plots.loss_curves(curves, title=title, bold=("GPT-2", "LLaMA")))
    display(
        pd.DataFrame(
            {
                "held-out loss": [run["held_out_loss"] for run in ladder["runs"]],
                "tokens/s": [round(run["tokens_per_s"]) for run in ladder["runs"]],
                "parameters": [run["parameters"]["total"] for run in ladder["runs"]],
                "KV bytes/token": [run["kv_cache_bytes_per_token"] for run in ladder["runs"]],
            },
            index=[run["label"] for run in ladder["runs"]],
        )
    )
if not results:
    print(
        "No ladder results in this copy. Make them (48 minutes on 2 CPU cores):\n"
        "  python recipes/tiny/make_data.py --out work/tiny\n"
        "  python recipes/ladder/run.py --data work/tiny/data --out work/ladder-cpu --size cpu\n"
        "then copy work/ladder-cpu/ladder.json to docs/data/ladder-cpu.json and run this cell."
    )

# %% [markdown]
# ## Try next
#
# - One switch at a time: `tiny.config.replace(positions="sinusoidal")`, or
#   `norm_position="post", final_norm=False` (GPT-1), and compare `steps(config)`.
# - Train one: `gpt2lab train --data ... --arch positions=rope,norm=rmsnorm` (see
#   docs/architectures.md).
# - `gpt2lab info --model gpt2 --model llama-3.1-405b`: the same comparison at 405 billion.
