"""Notebook 7: LAMBADA and WikiText-2 as the GPT-2 paper scored them. Build with
`python notebooks/build.py 07`."""

# %% [markdown]
# # 7. Evaluating like the paper
#
# The GPT-2 paper (Radford et al. 2019) measured its models "zero-shot": no training on the
# benchmark, only the probabilities the model gives to text. This notebook runs two of its
# benchmarks on the samples that ship with gpt2lab, and shows how each protocol choice moves the
# number:
#
# - **LAMBADA**: guess the last word of a passage, which needs the whole passage to guess;
# - **WikiText-2**: perplexity of Wikipedia articles, per word, read in sliding windows.
#
# Every benchmark comes down to one computation: the log-probability of some tokens given the
# tokens before them. It runs on the bundled `tiny`, or on GPT-2 124M where that is already in
# your Hugging Face cache. The samples are small (the first 300 LAMBADA passages, the first 3
# WikiText-2 test articles), so the numbers do not compare with the paper's; `gpt2lab eval` runs
# the full sets.

# %%
import pandas as pd
import torch

import gpt2lab
from gpt2lab.evals import TABLE3, evaluate_lambada, evaluate_perplexity
from gpt2lab.evals.data import SAMPLES, SAMPLES_DIR, read_lambada, read_lines
from gpt2lab.evals.lambada import split_last_word
from gpt2lab.weights import in_hub_cache

# %matplotlib inline

torch.manual_seed(0)
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"
model = gpt2lab.load(MODEL)
tok = model.tokenizer
passages = read_lambada(SAMPLES_DIR / SAMPLES["lambada/test"].name)
print(f"model: {MODEL}; {len(passages)} LAMBADA passages")

# %% [markdown]
# ## One LAMBADA passage
#
# Each passage is cut at its last space: the model reads the context and must produce the last
# word, with its leading space.

# %%
context, target = split_last_word(passages[0])
print("...", context[-300:])
print("target:", repr(target), "=", [tok.decode([i]) for i in tok.encode(target)])

# %% [markdown]
# What does the model expect instead? Its ten most likely next tokens after the context:

# %%
logits = model.run_with_hooks(context)[0, -1]
probs = torch.softmax(logits, dim=-1)
best = probs.topk(10)
first = tok.encode(target)[0]
print(
    f"the target's first token {tok.decode([first])!r}: probability {probs[first]:.2e}, "
    f"rank {int((logits > logits[first]).sum())}"
)
pd.DataFrame(
    {
        "token": [repr(tok.decode([i])) for i in best.indices.tolist()],
        "probability": best.values.numpy().round(3),
    }
)

# %% [markdown]
# ## Accuracy: three definitions
#
# "Did the model predict the word?" needs a definition when a word has several tokens, and the
# paper does not give one. gpt2lab names three:
#
# - **whole word, greedy** (the default): every token of the word is the model's top choice;
# - **last token** (`last_token=True`): only the word's last token, the earlier ones given;
# - **stop-word filter** (`stop_filter=True`): at the word's first token, choose only among
#   tokens that start a word and are not a stop word ("the", "it", ...), as the paper did.
#
# The perplexity is e^(mean negative log-probability of the target word).

# %%
N = 100  # passages, to keep the notebook quick; the sample has 300
rows = []
for name, kwargs in [
    ("whole word, greedy", {}),
    ("last token", {"last_token": True}),
    ("stop-word filter", {"stop_filter": True}),
]:
    result = evaluate_lambada(model, passages, limit=N, **kwargs)
    rows.append((name, f"{result.accuracy:.1%}", f"{result.ppl:,.1f}"))
paper = TABLE3["117M"]
rows.append(
    ("GPT-2 117M, paper (full test set)", f"{paper['lambada_acc']}%", f"{paper['lambada_ppl']}")
)
pd.DataFrame(rows, columns=[f"LAMBADA, first {N} passages", "accuracy", "perplexity"])

# %% [markdown]
# Where does the model rank the right word's first token? Rank 0 is a hit; a model that reads
# the passage puts the word near the top even when it misses.

# %% tags=["picture"]
import matplotlib.pyplot as plt

ranks = []
for passage in passages[:N]:
    context, target = split_last_word(passage)
    scores = model.run_with_hooks(context)[0, -1]
    first = tok.encode(target)[0]
    ranks.append(int((scores > scores[first]).sum()))
bins = [0, 1, 10, 100, 1000, 10000, model.config.vocab_size]
labels = ["0", "1-9", "10-99", "100-999", "1000-9999", "10000+"]
counts = pd.cut(pd.Series(ranks), bins, right=False, labels=labels).value_counts(sort=False)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.bar(labels, counts.to_numpy())
ax.set_xlabel("rank of the target word's first token")
ax.set_ylabel("passages")
ax.set_title(f"{MODEL} on the first {N} LAMBADA passages")
fig.tight_layout()

# %% [markdown]
# ## Perplexity per word, in sliding windows
#
# A text longer than the model's context is read in windows of `context` tokens that start
# `stride` tokens apart; each token is scored once, with at least `context - stride` tokens
# before it. The paper divides the total negative log-likelihood by the number of words of the
# dataset as published (not by GPT-2 tokens), so models with different tokenizers compare.
#
# WikiText is stored tokenized for word-level models ("a guest @-@ starring role , he said").
# The paper ran the text through **de-tokenizers** first, giving the model text that looks like
# what it learned from.

# %%
lines = read_lines(SAMPLES_DIR / SAMPLES["wikitext-2/test"].name)
print("raw:         ", lines[3][:110])
from gpt2lab.evals import detokenize

print("de-tokenized:", detokenize("wikitext", lines[3])[:110])

# %%
context_size = min(256, model.config.n_positions)
rows = []
for detok in (True, False):
    r = evaluate_perplexity(
        model,
        "wikitext2",
        lines,
        detok=detok,
        context=context_size,
        stride=context_size // 2,
        limit=20,
    )
    rows.append(
        (
            "de-tokenized" if detok else "raw",
            r.windows,
            r.bpe_tokens,
            r.units,
            round(r.ppl, 1),
            round(r.bpe_ppl, 1),
        )
    )
rows.append(("GPT-2 117M, paper (de-tokenized)", "", "", "", paper["wikitext2"], ""))
pd.DataFrame(
    rows,
    columns=[
        "WikiText-2, first 20 windows",
        "windows",
        "BPE tokens",
        "words",
        "ppl per word",
        "ppl per BPE token",
    ],
)

# %% [markdown]
# `tiny` learned from children's stories, so Wikipedia and LAMBADA's novels are far from what it
# knows, and its numbers are far from GPT-2's. The protocol choices still show: de-tokenizing
# lowers the per-word perplexity, because the model no longer pays for the dataset's odd
# spacing. With a window limit, both runs score the same number of BPE tokens, which stand for
# different numbers of words (the "words" column); compare the two forms on full runs only.
#
# ## Try next
#
# - `gpt2lab eval lambada --model gpt2` and `gpt2lab eval paper` run the full benchmarks
#   (downloading them once).
# - Change `stride`: more overlap gives each token more context, at the price of more windows.
# - `docs/evals.md` explains every protocol choice.
