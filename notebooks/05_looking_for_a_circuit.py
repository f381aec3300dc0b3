"""Notebook 5: which parts of the model do a task? Build with `python notebooks/build.py 05`."""

# %% [markdown]
# # 5. Looking for a circuit
#
# Looking at attention patterns (notebook 3) shows where the model *could* move information.
# To know which parts a prediction *needs*, change the model and measure what breaks. This
# notebook uses three tools of mechanistic interpretability on one small task:
#
# - **ablation**: switch a head off and see how much the answer suffers;
# - **activation patching**: copy one value from a run on another prompt and see how much of
#   the answer moves with it;
# - a **steering vector**: add a direction to the residual stream and change what the model
#   writes.
#
# It runs on the bundled `tiny`, or on GPT-2 124M where that is already in your Hugging Face
# cache.

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

import gpt2lab
from gpt2lab import trace as tr
from gpt2lab.embeddings import token_id
from gpt2lab.weights import in_hub_cache

# %matplotlib inline

torch.manual_seed(0)
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"
model = gpt2lab.load(MODEL)
c = model.config
print(f"model: {MODEL}, {c.n_layer} blocks x {c.n_head} heads")

# %% [markdown]
# ## The task: she or he?
#
# After "One day, Lily went to the park. After a while," a model that follows the story should
# prefer " she" to " he"; with "Tom" instead of "Lily" it should prefer " he". Our measure is the
# **logit difference** logit(" she") - logit(" he") at the last position: positive means " she".
# The two prompts have the same number of tokens and differ in one, the name.

# %%
clean = "One day, Lily went to the park. After a while,"
corrupted = "One day, Tom went to the park. After a while,"
she, he = token_id(model, " she"), token_id(model, " he")
metric = tr.logit_difference(she, he)  # logits -> logit[she] - logit[he] at the last position
clean_value = metric(model.run_with_hooks(clean))
corrupted_value = metric(model.run_with_hooks(corrupted))
print(f"clean     ({clean!r}): {clean_value:+.2f}")
print(f"corrupted ({corrupted!r}): {corrupted_value:+.2f}")

# %% [markdown]
# ## Ablation: switch each head off
#
# `ablate_head(layer, head)` sets the head's output to 0 (`how="mean"` would use its mean
# over the positions instead). We run the clean prompt once per head and see how much of the
# logit difference is left. A head the task needs makes it drop.

# %%
effect = torch.zeros(c.n_layer, c.n_head)
for layer in range(c.n_layer):
    for head in range(c.n_head):
        logits = model.run_with_hooks(clean, [tr.ablate_head(layer, head)])
        effect[layer, head] = metric(logits) - clean_value
worst = divmod(int(effect.argmin()), c.n_head)
print(f"the largest drop: block {worst[0]} head {worst[1]}, {effect.min():+.2f}")
pd.DataFrame(
    effect.numpy(),
    index=[f"block {i}" for i in range(c.n_layer)],
    columns=[f"head {h}" for h in range(c.n_head)],
).round(2)

# %% [markdown]
# ## Activation patching
#
# Ablation tells what is needed, not where the information is. **Activation patching** runs the
# corrupted prompt ("Tom") and, at one block and one position, puts back the residual stream of
# the clean run ("Lily"). If the answer swings back to " she", that spot carries the name's
# gender. `activation_patching` does it for every block and position: 1 means the patch brings
# the whole clean answer back, 0 nothing.

# %% tags=["picture"]
result = tr.activation_patching(model, clean, corrupted, metric)
labels = [f"{t} {tok!r}" for t, tok in enumerate(result.tokens)]
fig, ax = plt.subplots(figsize=(9, 3.8))
image = ax.imshow(result.effect.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
ax.set_yticks(range(c.n_layer), [f"block {i}" for i in range(c.n_layer)])
ax.set_title("patching the residual stream (resid_pre) from 'Lily' into 'Tom'")
fig.colorbar(image, ax=ax, label="share of the clean answer restored")
fig.tight_layout()

# %% [markdown]
# Read the picture from top to bottom. In the first blocks only the name's own position matters:
# the information is still where the name is. Lower down, the last position takes over: some
# heads have copied "she-ness" from the name to the place where the next word is chosen. The
# blocks where the switch happens are where to look for the heads that move it.

# %%
result.to_frame().round(2)

# %% [markdown]
# ## A steering vector
#
# The residual stream of "Lily was happy" minus that of "Lily was sad", at one block, is a
# direction that means roughly "happy rather than sad" to the model (activation addition, Turner
# et al. 2023). Adding it while the model writes pushes the story that way; subtracting it pushes
# the other way.

# %%
layer = c.n_layer // 2
v = tr.steering_vector(model, "Lily was happy", "Lily was sad", layer=layer)
start = "Tom looked at the broken toy. He felt"
for scale in (-1.0, 0.0, 1.0):
    edits = [tr.add_vector(layer, v, scale=scale)] if scale else []
    text = model.generate_text(start, 20, edits=edits, top_k=20, seed=0)
    print(f"scale {scale:+}: {start}{text}")

# %% [markdown]
# ## Try next
#
# - Patch `hook_attn_out` or `hook_mlp_out` instead (`step=` of `activation_patching`) to see
#   whether attention or the MLPs move the information.
# - Ablate the heads of the blocks where the patching picture switches, and measure again.
# - Try another pair of prompts: a place, a colour, a number.
