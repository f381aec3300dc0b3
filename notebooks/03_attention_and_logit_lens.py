"""Notebook 3: where attention looks, and what each layer predicts. Build with
`python notebooks/build.py 03`."""

# %% [markdown]
# # 3. Attention and the logit lens
#
# Two ways to look inside the model while it reads a prompt:
#
# - **attention patterns**: for every head, how much each token takes from each earlier token;
# - the **logit lens**: what the model would predict if it stopped after block 1, 2, 3, ...,
#   so you can watch the answer form layer by layer.
#
# It runs on the bundled `tiny`, or on GPT-2 124M where that is already in your Hugging Face
# cache.

# %%
import pandas as pd
import torch

import gpt2lab
from gpt2lab.viz import plots
from gpt2lab.weights import in_hub_cache

# gpt2lab.viz.plots draws for files; this shows its figures in the notebook:
# %matplotlib inline

torch.manual_seed(0)
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"
model = gpt2lab.load(MODEL)
prompt = "One day, Lily had a red ball. Tom had a blue kite. Lily gave Tom the red"
trace = model.run_with_cache(prompt)
print(f"model: {MODEL}; {len(trace.tokens())} tokens: {trace.tokens()}")

# %% [markdown]
# A trace holds the value of every step of that one forward pass. In a notebook it shows itself
# as a table: the tokens and the most likely next tokens.

# %%
trace

# %% [markdown]
# ## One head
#
# `hook_pattern` holds the attention pattern of every head of a block. Row = the token that
# looks (the query), column = the token looked at (the key). Each row sums to 1, and the upper
# triangle is 0 because a token cannot look ahead.

# %%
layer, head = 0, 0
pattern = trace.to_frame(f"blocks.{layer}.attn.hook_pattern", head=head)
pattern.round(2)

# %%
plots.attention_heatmap(trace, layer, head)

# %% [markdown]
# ## All heads at once
#
# Every block x head as small heatmaps. Some patterns are easy to name: a head that looks at the
# token itself (the diagonal), at the previous token (the line just below it), or at the first
# token (the first column, a place to park attention when nothing else is useful).

# %% tags=["picture"]
plots.attention_overview(trace)

# %% [markdown]
# We can find such heads by measuring: the mean weight each head puts on the previous token and
# on the first token.

# %%
c = model.config
rows = []
for layer in range(c.n_layer):
    for head in range(c.n_head):
        p = torch.tensor(trace.to_frame(f"blocks.{layer}.attn.hook_pattern", head=head).to_numpy())
        previous = p.diagonal(offset=-1).mean().item()  # token t looking at t - 1
        first = p[1:, 0].mean().item()  # every token but the first looking at the first
        rows.append((layer, head, round(previous, 2), round(first, 2)))
heads = pd.DataFrame(rows, columns=["block", "head", "previous token", "first token"])
heads.sort_values("previous token", ascending=False).head(5)

# %% [markdown]
# ## The logit lens
#
# After the last block the model turns the residual stream into next-token scores:
# logits = ln_final(x) @ W_Eᵀ. The **logit lens** (nostalgebraist, 2020) applies the same read-out
# to the stream after every block, as if the model stopped there. `target="next"` also follows
# the token that really comes next in the prompt: its **rank** (0 = the model's top choice) at
# each layer.

# %%
from gpt2lab.lens import logit_lens

lens = logit_lens(model, trace, k=3, target="next", points="post")
lens

# %% [markdown]
# The same as a picture: each cell is the top token at that layer (row) and position (column),
# coloured by its probability.

# %%
plots.logit_lens_grid(lens)

# %% [markdown]
# At the last position nothing comes next in the prompt, so we ask for a token instead: how does
# " ball", the word the story points to, climb through the layers?

# %%
ball = logit_lens(model, trace, k=3, target=" ball", points="post")
print("rank of ' ball' after each block:", ball.target_rank[:, -1].tolist())
last = len(ball.tokens) - 1
plots.rank_lines(ball, position=last, title="rank of ' ball' after the last token, by layer")

# %% [markdown]
# ## Who wrote the answer? Direct logit attribution
#
# The final logit of " ball" is a sum: every head and every MLP added a vector to the residual
# stream, and each vector's share of the logit can be computed exactly.
# `direct_logit_attribution` splits it; the parts add up to the real logit.

# %%
from gpt2lab.lens import direct_logit_attribution

parts = direct_logit_attribution(model, trace, " ball")
print(f"logit of ' ball': {parts.logit:.3f}; sum of the parts: {float(parts.values.sum()):.3f}")
plots.attribution_bars(parts, top=12)

# %% [markdown]
# A part that pushes the logit up is not always a part the answer needs: removing a head also
# changes what the blocks after it compute. Notebook 5 tests that by removing heads and patching
# activations.
#
# ## Everything at once
#
# `inspect_prompt` gathers what `gpt2lab inspect` prints for one prompt (tokens, next tokens, the
# logit lens, one head's attention) in one object, which shows itself as a report.

# %%
from gpt2lab.inspection import inspect_prompt

inspect_prompt(model, prompt, layer=0, head=0, target="next", model_name=MODEL)

# %% [markdown]
# ## Try next
#
# - Choose another prompt, or a token to follow with `target=`.
# - `points="all"` also reads the stream between attention and MLP inside each block.
# - `gpt2lab inspect "your prompt" --model tiny --html report.html` puts all of this in one file.
