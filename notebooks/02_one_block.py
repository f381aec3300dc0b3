"""Notebook 2: one transformer block, step by step. Build with `python notebooks/build.py 02`."""

# %% [markdown]
# # 2. One block, step by step
#
# GPT-2 is the same **block** repeated (12 times in GPT-2 124M, 6 in `tiny`). This notebook
# walks through block 0 one step per cell. Each cell computes the step by hand, with plain
# PyTorch and the block's weights, prints the step's formula as gpt2lab names it, and checks the
# result against the value the model computed. At the end we stop the model half-way, change a
# number, and run it on.
#
# It runs on the bundled `tiny`, or on GPT-2 124M where that is already in your Hugging Face
# cache.

# %%
import math

import pandas as pd
import torch

import gpt2lab
from gpt2lab.hooks import STEPS, describe
from gpt2lab.weights import in_hub_cache

# %matplotlib inline

torch.manual_seed(0)
torch.set_grad_enabled(False)  # we only look: no gradients
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"
model = gpt2lab.load(MODEL)
c = model.config
L = 0  # the block we walk through
HEAD = 1  # the head we follow inside it
prompt = "Mike is quick. He moves"
trace = model.run_with_cache(prompt)  # the model's own value at every step
print(f"model: {MODEL}; tokens: {trace.tokens()}")

# %% [markdown]
# These are the steps of a block, in the order the model computes them. `B` is the batch (one
# prompt here), `T` the tokens, `C` the width of the vectors, `H` the heads and `D` = C / H the
# width of one head.

# %%
pd.DataFrame(
    [(s.name.replace("{L}", str(L)), s.shape, s.formula) for s in STEPS if "{L}" in s.name],
    columns=["step", "shape", "formula"],
)

# %% [markdown]
# A small helper compares what we compute with what the model computed at that step. It reads
# the model's value with `trace.to_frame`, a table of one prompt (and one head, for the steps
# that are split into heads), so we never depend on how the model lays out its tensors.


# %%
def check(name: str, mine: torch.Tensor, head: int | None = None) -> None:
    """Print the step's formula and whether ``mine`` equals the model's value."""
    step = describe(name)
    theirs = torch.tensor(trace.to_frame(name, head=head).to_numpy())
    same = torch.allclose(mine, theirs, atol=1e-4, rtol=1e-4)
    where = "" if head is None else f" (head {head})"
    print(f"{name}{where}: {step.formula}")
    print(f"  {step.title}, {list(mine.shape)}; the same as the model's: {same}")


block = model.transformer.h[L]
eps = c.layer_norm_epsilon
D = c.n_embd // c.n_head
print(f"block {L}: {c.n_head} heads of D = {D} numbers each; we follow head {HEAD}")

# %% [markdown]
# ## The residual stream going in
#
# Block 0 receives the token embeddings plus the position embeddings (notebook 1). Every block
# reads this **residual stream** and adds its results to it.

# %%
x = trace["hook_embed"][0] + trace["hook_pos_embed"][0]  # [T, C]
check(f"blocks.{L}.hook_resid_pre", x)

# %% [markdown]
# ## Layer norm 1: mean
#
# Layer norm makes every position's vector have mean 0 and variance 1, so that the numbers stay
# in a range the next step expects. First the mean over the C channels of each position.

# %%
mu = x.mean(dim=-1, keepdim=True)  # [T, 1]
check(f"blocks.{L}.ln1.hook_mean", mu)

# %% [markdown]
# ## Layer norm 1: variance

# %%
var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # [T, 1]
check(f"blocks.{L}.ln1.hook_var", var)

# %% [markdown]
# ## Layer norm 1: scale
#
# The standard deviation of each position, with a small ε so that it is never zero.
# TransformerLens calls it `hook_scale`.

# %%
scale = torch.sqrt(var + eps)  # [T, 1]
check(f"blocks.{L}.ln1.hook_scale", scale)

# %% [markdown]
# ## Layer norm 1: normalize

# %%
x_hat = (x - mu) / scale  # [T, C]
check(f"blocks.{L}.ln1.hook_normalized", x_hat)

# %% [markdown]
# ## Layer norm 1: gain and bias
#
# Then a learned gain g and bias b per channel give back some scale where training found it
# useful.

# %%
h = x_hat * block.ln_1.weight + block.ln_1.bias  # [T, C]
check(f"blocks.{L}.ln1.hook_out", h)

# %% [markdown]
# ## Queries
#
# Attention starts with three linear maps of h. One matrix `c_attn` holds W_Q, W_K and W_V side
# by side; each head uses its own D columns of each. A **query** says what a token is looking
# for.

# %%
W_Q, W_K, W_V = block.attn.c_attn.weight.split(c.n_embd, dim=1)  # [C, C] each
b_Q, b_K, b_V = block.attn.c_attn.bias.split(c.n_embd)
cols = slice(HEAD * D, (HEAD + 1) * D)  # this head's columns
q = h @ W_Q[:, cols] + b_Q[cols]  # [T, D]
check(f"blocks.{L}.attn.hook_q", q, head=HEAD)

# %% [markdown]
# ## Keys
#
# A **key** says what a token offers to the queries that look at it.

# %%
k = h @ W_K[:, cols] + b_K[cols]  # [T, D]
check(f"blocks.{L}.attn.hook_k", k, head=HEAD)

# %% [markdown]
# ## Values
#
# A **value** is what a token passes on when it is looked at.

# %%
v = h @ W_V[:, cols] + b_V[cols]  # [T, D]
check(f"blocks.{L}.attn.hook_v", v, head=HEAD)

# %% [markdown]
# ## Attention scores
#
# Each query is compared with every key by a dot product, divided by √D so the scores do not
# grow with the head's width. Row t holds how well token t's query matches each key.

# %%
scores = q @ k.T / math.sqrt(D)  # [T, T]
check(f"blocks.{L}.attn.hook_unmasked_scores", scores, head=HEAD)

# %% [markdown]
# ## The causal mask
#
# A token may not look at the tokens after it (when the model writes, they do not exist yet),
# so their scores become -∞.

# %%
T = x.shape[0]
future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # key after query
masked = scores.masked_fill(future, float("-inf"))
check(f"blocks.{L}.attn.hook_attn_scores", masked, head=HEAD)  # masked, as in TransformerLens

# %% [markdown]
# ## The attention pattern
#
# Softmax turns each row of scores into weights that are positive and sum to 1 (e^-∞ = 0, so the
# future gets nothing). Row t says how much token t takes from each earlier token.

# %%
pattern = torch.softmax(masked, dim=-1)  # [T, T]
check(f"blocks.{L}.attn.hook_pattern", pattern, head=HEAD)
pd.DataFrame(pattern.numpy(), index=trace.tokens(), columns=trace.tokens()).round(2)

# %% [markdown]
# ## Weighted values z
#
# Each token's output of this head is the mix of the values, weighted by its row of the
# pattern.

# %%
z = pattern @ v  # [T, D]
check(f"blocks.{L}.attn.hook_z", z, head=HEAD)

# %% [markdown]
# ## Attention output
#
# The heads' z are put side by side (H x D = C numbers per token) and mixed by one more matrix,
# W_O (`c_proj`). Here we take every head's z from the trace.

# %%
z_all = torch.cat(
    [
        torch.tensor(trace.to_frame(f"blocks.{L}.attn.hook_z", head=i).to_numpy())
        for i in range(c.n_head)
    ],
    dim=-1,
)  # [T, C]
attn_out = z_all @ block.attn.c_proj.weight + block.attn.c_proj.bias
check(f"blocks.{L}.hook_attn_out", attn_out)

# %% [markdown]
# ## Residual stream after attention
#
# Attention does not replace the stream: it **adds** to it.

# %%
resid_mid = x + attn_out
check(f"blocks.{L}.hook_resid_mid", resid_mid)

# %% [markdown]
# ## Layer norm 2
#
# The same five steps as layer norm 1, with their own gain and bias, before the MLP.

# %%
mu2 = resid_mid.mean(dim=-1, keepdim=True)
var2 = ((resid_mid - mu2) ** 2).mean(dim=-1, keepdim=True)
scale2 = torch.sqrt(var2 + eps)
x_hat2 = (resid_mid - mu2) / scale2
h2 = x_hat2 * block.ln_2.weight + block.ln_2.bias
steps = [("mean", mu2), ("var", var2), ("scale", scale2), ("normalized", x_hat2), ("out", h2)]
for name, mine in steps:
    check(f"blocks.{L}.ln2.hook_{name}", mine)

# %% [markdown]
# ## MLP: first linear layer
#
# The MLP works on each token on its own: it widens the vector to 4C numbers (the
# **neurons**)...

# %%
pre = h2 @ block.mlp.c_fc.weight + block.mlp.c_fc.bias  # [T, 4C]
check(f"blocks.{L}.mlp.hook_pre", pre)

# %% [markdown]
# ## MLP: GELU
#
# ...lets each neuron through a smooth switch, GELU (about 0 for negative inputs, about the
# input for positive ones)...

# %%
post = 0.5 * pre * (1 + torch.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3)))
check(f"blocks.{L}.mlp.hook_post", post)

# %% [markdown]
# ## MLP output
#
# ...and maps the 4C neurons back to C numbers.

# %%
mlp_out = post @ block.mlp.c_proj.weight + block.mlp.c_proj.bias  # [T, C]
check(f"blocks.{L}.hook_mlp_out", mlp_out)

# %% [markdown]
# ## Residual stream leaving the block
#
# Added to the stream again. This is the next block's input.

# %%
resid_post = resid_mid + mlp_out
check(f"blocks.{L}.hook_resid_post", resid_post)
print(
    "the next block starts from it:",
    torch.equal(trace[f"blocks.{L}.hook_resid_post"], trace[f"blocks.{L + 1}.hook_resid_pre"]),
)

# %% [markdown]
# ## Stop, edit, resume
#
# Now change a value inside the block and let the model run on. `run_to` runs the model up to
# one step and stops there; `paused.value` is the value at that step, which you may change;
# `paused.resume()` runs the rest of the model from there to the next-token scores (the
# **logits**).
#
# We stop at the MLP's neurons of block 0 and find the neuron that fires most on the last
# token, " moves".


# %%
def top_next(logits: torch.Tensor, k: int = 5) -> list[str]:
    """The k most likely next tokens after the last position, with their probabilities."""
    probs = torch.softmax(logits[0, -1], dim=-1)
    best = probs.topk(k)
    return [
        f"{model.tokenizer.decode([i])!r} {p:.3f}"
        for p, i in zip(best.values.tolist(), best.indices.tolist())
    ]


step = f"blocks.{L}.mlp.hook_post"
paused = model.run_to(prompt, step)
last = torch.tensor(trace.to_frame(step).to_numpy())[-1]  # the neurons at " moves"
neuron = int(last.argmax())
print(f"stopped at {step}, value {list(paused.value.shape)}")
print(f"neuron {neuron} fires most at ' moves': {last[neuron]:.2f}")
print("before:", top_next(paused.resume()))

# %% [markdown]
# Switch that neuron off (set it to 0) at the last position, and resume:

# %%
edited = paused.value.clone()
edited[0, -1, neuron] = 0.0  # [batch, position, neuron]
off = paused.resume(edited)
print("neuron off:", top_next(off))
edited[0, -1, neuron] = 10 * last[neuron]
boosted = paused.resume(edited)
print("neuron x10:", top_next(boosted))

# %% [markdown]
# The probabilities of the tokens the model liked best, before and after each edit:

# %% tags=["picture"]
import matplotlib.pyplot as plt

runs = {"as computed": paused.resume(), "neuron off": off, "neuron x10": boosted}
probs = {name: torch.softmax(logits[0, -1], dim=-1) for name, logits in runs.items()}
shown = probs["as computed"].topk(8).indices
fig, ax = plt.subplots(figsize=(8, 3.5))
for i, (name, p) in enumerate(probs.items()):
    ax.bar([x + 0.27 * (i - 1) for x in range(len(shown))], p[shown].numpy(), 0.27, label=name)
ax.set_xticks(range(len(shown)), [repr(model.tokenizer.decode([t])) for t in shown.tolist()])
ax.set_ylabel("probability")
ax.set_title(f"next token after {prompt!r}: block {L}, neuron {neuron} edited at ' moves'")
ax.legend()
fig.tight_layout()

# %% [markdown]
# `resume` reuses everything computed before the block, so only the rest of the model runs
# again. The same change can be written as an **edit** that any run accepts (`run_with_hooks`,
# `run_with_cache`, `generate`): `scale_neuron(layer, neuron, factor)` multiplies a neuron at
# every position.

# %%
from gpt2lab.trace import scale_neuron

logits = model.run_with_hooks(prompt, [scale_neuron(L, neuron, 0.0)])
print("neuron off everywhere:", top_next(logits))
print("generated:", repr(model.generate_text(prompt, 12, greedy=True)))
print(
    "edited:   ",
    repr(model.generate_text(prompt, 12, greedy=True, edits=[scale_neuron(L, neuron, 0.0)])),
)

# %% [markdown]
# ## The whole model as a spreadsheet
#
# `gpt2lab.spreadsheet` writes a workbook that *computes* a model with formulas: one sheet per
# step above, in the same order, from the prompt's tokens to the next token (see
# `docs/spreadsheet.md`). GPT-2's would be close to a gigabyte; the bundled `chars` model (the
# same architecture, one token per character) makes one that Excel or LibreOffice opens and
# recomputes in seconds. The plan says its size before anything is written.

# %%
from IPython.display import Markdown

from gpt2lab import spreadsheet

chars_model = gpt2lab.load("chars")
print(spreadsheet.plan_workbook(chars_model, "ROMEO:").summary())
spreadsheet.write_workbook(chars_model, "ROMEO:", "romeo.xlsx")
Markdown("Wrote [romeo.xlsx](romeo.xlsx): change a letter in its `input` sheet and watch.")

# %% [markdown]
# ## Try next
#
# - Set `L` to the last block, or `HEAD` to another head, and run all cells again.
# - Stop at `blocks.0.attn.hook_pattern` and make a token look only at the first token.
# - `docs/walkthrough.md` follows the same prompt through the whole model.
