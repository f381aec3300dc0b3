"""Notebook 4: from scores to a chosen token. Build with `python notebooks/build.py 04`."""

# %% [markdown]
# # 4. Choosing the next token
#
# The model does not write text. It gives a score (a **logit**) to each of the 50,257 tokens of
# its vocabulary, and something else chooses one. This notebook shows the usual ways to choose:
# **greedy** (always the best), **temperature** (flatten or sharpen the odds), **top-k** (only the
# k best) and **top-p** (only the best tokens that together hold probability p), and what each
# does to the text.
#
# It runs on the bundled `tiny`, or on GPT-2 124M where that is already in your Hugging Face
# cache.

# %%
import pandas as pd
import torch

import gpt2lab
from gpt2lab.generate import SamplingSettings, explain_sampling
from gpt2lab.weights import in_hub_cache

# %matplotlib inline

torch.manual_seed(0)
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"
model = gpt2lab.load(MODEL)
tok = model.tokenizer
prompt = "Once upon a time, there was a little"
logits = model.run_with_hooks(prompt)[0, -1]  # the scores for the token after the prompt [V]
print(f"model: {MODEL}; {logits.numel()} scores for the token after {prompt!r}")

# %% [markdown]
# ## Scores -> probabilities
#
# Softmax turns the scores into probabilities: p_i = e^(logit_i) / Σ_j e^(logit_j). The best
# ten:

# %%
probs = torch.softmax(logits, dim=-1)
best = probs.topk(10)
pd.DataFrame(
    {
        "token": [repr(tok.decode([i])) for i in best.indices.tolist()],
        "logit": logits[best.indices].numpy().round(2),
        "probability": best.values.numpy().round(3),
    }
)

# %% [markdown]
# ## Greedy
#
# Always take the most likely token. It is deterministic, and it often falls into loops: the
# most likely sentence is rarely an interesting one.

# %%
print(repr(model.generate_text(prompt, 40, greedy=True)))

# %% [markdown]
# ## Temperature
#
# Divide the logits by a temperature T before the softmax. T < 1 sharpens the distribution
# (towards greedy), T > 1 flattens it (more surprises, more mistakes). `explain_sampling` shows
# one sampling step stage by stage; here the probability of each of the best tokens at three
# temperatures.


# %%
def stage_table(settings: SamplingSettings, top: int = 8) -> pd.DataFrame:
    """One sampling step for these settings: each candidate's way through the stages."""
    ex = explain_sampling(logits, settings, top=top, tokenizer=tok)
    return pd.DataFrame(
        [
            {
                "token": repr(r.token),
                "p at T": round(r.prob_before, 3),
                "top-k keeps": r.kept_top_k,
                "top-p keeps": r.kept_top_p,
                "p drawn with": round(r.prob, 3),
            }
            for r in ex.rows
        ]
    )


table = pd.DataFrame({"token": [repr(tok.decode([i])) for i in best.indices[:8].tolist()]})
for t in (0.5, 1.0, 1.5):
    table[f"T = {t}"] = stage_table(SamplingSettings(temperature=t))["p at T"]
table

# %% [markdown]
# As a picture: the lower the temperature, the more the first token takes.

# %% tags=["picture"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 3.5))
table.set_index("token").plot.bar(ax=ax, width=0.8, rot=0)
ax.set_ylabel("probability")
ax.set_title(f"the next token after {prompt!r}, at three temperatures")
fig.tight_layout()

# %% [markdown]
# ## Top-k and top-p
#
# **Top-k** keeps the k most likely tokens and sets the others' probability to 0. **Top-p**
# (nucleus sampling) keeps the smallest set of most likely tokens whose probabilities add up to
# at least p, so it keeps few tokens when the model is sure and many when it is not. The kept
# tokens' probabilities are then scaled to sum to 1 again ("p drawn with").

# %%
settings = SamplingSettings(temperature=1.0, top_k=5, top_p=0.5, seed=0)
ex = explain_sampling(logits, settings, top=8, tokenizer=tok)
print(
    f"top-k keeps {ex.kept_top_k} tokens, top-p then keeps {ex.effective_k}, which held "
    f"{ex.mass_kept:.0%} of the probability; the draw (seed 0) chose "
    f"{tok.decode([ex.chosen])!r}"
)
stage_table(settings)

# %% [markdown]
# ## What it does to the text
#
# The same prompt with each setting. A seed makes each draw repeatable: run the cell again and
# you get the same text; change the seed to get another.

# %%
runs = {
    "greedy": dict(greedy=True),
    "T = 0.7": dict(temperature=0.7, seed=1),
    "T = 1.5": dict(temperature=1.5, seed=1),
    "top-k 40": dict(top_k=40, seed=1),
    "top-p 0.9": dict(top_p=0.9, seed=1),
}
for name, kwargs in runs.items():
    print(f"{name:>10}: {model.generate_text(prompt, 25, **kwargs)!r}")

# %% [markdown]
# ## Try it with a slider
#
# Where `ipywidgets` is installed (it is in Jupyter, VS Code and Colab), the slider below
# redraws the table as you move the temperature and top-p. Below it, the table for T = 1 and
# top-p 0.9 is printed too: it stands in where there is no ipywidgets, and on a page that shows
# stored outputs, where a slider cannot move.


# %%
def show(temperature: float = 1.0, top_p: float = 0.9) -> pd.DataFrame:
    return stage_table(SamplingSettings(temperature=temperature, top_p=top_p, seed=0))


try:
    import ipywidgets as widgets
except ImportError:
    widgets = None
if widgets is None:
    print("ipywidgets is not installed: pip install ipywidgets for the slider")
else:
    widgets.interact(
        show,
        temperature=widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1),
        top_p=widgets.FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05),
    )
show()

# %% [markdown]
# ## Try next
#
# - A prompt where the model is sure ("The capital of France is") and one where it is not: how
#   many tokens does top-p 0.9 keep in each?
# - `gpt2lab inspect "your prompt" --model tiny --sampling --temperature 0.8 --top-p 0.9 --seed 0`
#   prints the same stages in a terminal.
