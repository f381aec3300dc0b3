"""Notebook 1: text -> tokens -> vectors. Build with `python notebooks/build.py 01`."""

# %% [markdown]
# # 1. Tokens and embeddings
#
# A language model never sees letters. The text is cut into **tokens** (pieces of words), each
# token becomes a number (its **id**), and each id becomes a vector of numbers (its
# **embedding**). This notebook follows the word " Shawshank" through those steps, then looks at
# what the vectors learned: which words lie close together, whether "king - man + woman" lands
# near "queen", and how the model tells positions apart.
#
# Every cell runs offline on `tiny`, the small GPT-2 bundled with gpt2lab (6 layers, 192 numbers
# per vector, trained on children's stories). Where GPT-2 124M is already in your Hugging Face
# cache, the notebook uses it instead: the next cell says which one it runs.

# %%
import torch
import torch.nn.functional as F

import gpt2lab
from gpt2lab.viz import plots
from gpt2lab.weights import in_hub_cache

# gpt2lab.viz.plots draws for files; this shows its figures in the notebook:
# %matplotlib inline

torch.manual_seed(0)
MODEL = "gpt2" if in_hub_cache("gpt2") else "tiny"  # GPT-2 only if it needs no download
model = gpt2lab.load(MODEL)
tok = model.tokenizer
c = model.config
print(f"model: {MODEL}, {c.n_layer} blocks, vectors of {c.n_embd} numbers, {c.vocab_size} tokens")

# %% [markdown]
# ## Text -> tokens
#
# GPT-2's tokenizer is **byte-pair encoding** (BPE): it starts from single bytes and applies
# merges it learned from frequent pairs. Common words end up as one token; a rare word is cut
# into a few known pieces. A word inside a sentence keeps its leading space, shown as `Ġ`.

# %%
ids = tok.encode(" Shawshank")
print("ids:   ", ids)
print("tokens:", [tok.id_to_token(i) for i in ids])
print("pieces:", [tok.decode([i]) for i in ids])

# %% [markdown]
# Three tokens: " Shaw", "sh", "ank". `tok.trace` shows the merges that built them, in the
# order BPE applied them (a lower rank is a merge learned earlier, from a more frequent pair).

# %%
for word in tok.trace(" Shawshank"):
    for step in word.merges:
        print(f"rank {step.rank:6}: {step.pair[0]!r} + {step.pair[1]!r} -> {list(step.parts)}")

# %% [markdown]
# Compare with common words, which are one token each:

# %%
for text in [" the", " dog", " happy", " Shawshank", " Redemption"]:
    pieces = [tok.id_to_token(i) for i in tok.encode(text)]
    print(f"{text!r:14} {len(pieces)} token(s): {pieces}")

# %% [markdown]
# ## Tokens -> vectors
#
# The first thing the model does is look up each id in the **token embedding** table
# W_E (one row of `n_embd` numbers per token of the vocabulary). Nothing else: a row of a
# matrix.

# %%
W_E = model.transformer.wte.weight.detach()  # [vocab, n_embd]
vectors = W_E[ids]  # [3, n_embd]: one row per token of " Shawshank"
print("W_E:", list(W_E.shape), " rows for ' Shawshank':", list(vectors.shape))
print("first 6 numbers of ' Shaw':", [round(x, 3) for x in vectors[0, :6].tolist()])

# %% [markdown]
# ## Nearest words
#
# Training moves these rows so that tokens used in the same kinds of sentences point in similar
# directions. The **cosine similarity** cos(a, b) = a·b / (|a| |b|) measures that: 1 is the same
# direction, 0 unrelated. `nearest_tokens` ranks every token by its cosine to a query.

# %%
import pandas as pd

from gpt2lab.embeddings import nearest_tokens, token_id

table = {
    word: [
        f"{n.token.replace('Ġ', ' ')!r} {n.cosine:.2f}" for n in nearest_tokens(model, word, k=5)
    ]
    for word in [" dog", " happy", " king", " red"]
}
pd.DataFrame(table, index=[f"#{i + 1}" for i in range(5)])

# %% [markdown]
# ## king - man + woman
#
# A famous property of word vectors (word2vec, 2013): the direction from " man" to " woman" is
# roughly the direction from " king" to " queen", so king - man + woman lands near queen. Here
# is the same arithmetic on the model's token embeddings. As word2vec does, the three words of
# the question are left out of the answers.


# %%
def analogy(a: str, b: str, c: str, want: str, k: int = 5) -> None:
    """Print the tokens nearest to W_E[a] - W_E[b] + W_E[c], and the rank of ``want``."""
    target = W_E[token_id(model, a)] - W_E[token_id(model, b)] + W_E[token_id(model, c)]
    cosine = F.cosine_similarity(W_E, target[None], dim=-1)
    cosine[[token_id(model, w) for w in (a, b, c)]] = -1.0  # leave out the question's words
    best = cosine.topk(k).indices.tolist()
    rank = int((cosine > cosine[token_id(model, want)]).sum())
    answers = ", ".join(repr(tok.decode([i])) for i in best)
    print(f"{a!r} - {b!r} + {c!r} -> {answers}   ({want!r} is at rank {rank})")


analogy(" king", " man", " woman", " queen")
analogy(" boy", " he", " she", " girl")
analogy(" his", " he", " she", " her")
analogy(" cats", " cat", " dog", " dogs")
analogy(" bigger", " big", " small", " smaller")

# %% [markdown]
# Rank 0 means the expected word is the nearest. A small model trained on children's stories
# rarely met a queen, so "king - man + woman" may miss; the analogies it met often (pronouns,
# plurals, comparatives) land exactly. GPT-2 124M, trained on web text, has seen far more kings
# and queens.
#
# ## A map of words (PCA)
#
# The vectors have too many numbers to draw. **PCA** finds the two directions along which the
# chosen vectors differ most and draws each word at its coordinates along them.

# %% tags=["picture"]
from gpt2lab.embeddings import word_map

words = [
    " happy",
    " glad",
    " sad",
    " angry",
    " scared",
    " dog",
    " cat",
    " rabbit",
    " bird",
    " red",
    " blue",
    " green",
    " king",
    " queen",
    " prince",
]
result = word_map(model, words)
print("share of the variance on each axis:", [round(s, 3) for s in result.explained.tolist()])
plots.embedding_map(result, f"{MODEL}: token embeddings of chosen words (PCA)")

# %% [markdown]
# ## Positions
#
# Attention alone cannot tell the first token from the fifth, so GPT-2 adds a second learned
# table, the **position embeddings** W_P: the first block sees x₀ = W_E[id] + W_P[position].
# `position_map` builds x₀ for one word at several positions. `token_cosine` says how much of
# the word's own direction is left at each position.

# %%
from gpt2lab.embeddings import position_map

where = [0, 1, 2, 4, 8, 16, 64, 255]
pos = position_map(model, " dog", where)
pd.DataFrame({"position": where, "cos(x0, W_E[' dog'])": pos.token_cosine.numpy().round(3)})

# %% [markdown]
# The position embeddings themselves, all of them, on their two principal components: position
# 0 (where every text starts) sits apart, and the later positions follow one another along a
# curve.

# %%
plots.position_embedding_map(position_map(model, None), f"{MODEL}: position embeddings W_P (PCA)")

# %% [markdown]
# ## GPT-2's real position embeddings
#
# The position embeddings of GPT-2 124M (1024 positions x 768 numbers) ship with the gpt2lab
# repository in `docs/data/`, so this part shows the real GPT-2 even offline. Nobody wrote a
# formula into them; they were learned from random numbers. Neighbouring positions end up with
# almost the same vector, and the PCA map draws a curve that winds around the centre, the kind
# of curve sines and cosines of the position draw.

# %%
from pathlib import Path

from IPython.display import display

from gpt2lab.embeddings import load_raw_tensor, wpe_map

# In a clone of the repository: beside this notebook, or where gpt2lab was installed from.
roots = [Path(".."), Path(gpt2lab.__file__).resolve().parents[2]]
found = [p / "docs" / "data" / "gpt2-124M-wpe.f32le" for p in roots]
wpe_file = next((f for f in found if f.exists()), None)
if wpe_file is not None:
    wpe = load_raw_tensor(wpe_file, (1024, 768))
    for d in (1, 8, 64, 256):
        similar = F.cosine_similarity(wpe[:-d], wpe[d:], dim=-1).mean().item()
        print(f"positions {d:3} apart: mean cosine {similar:.3f}")
    title = "GPT-2 124M: position embeddings W_P (PCA)"
    display(plots.position_embedding_map(wpe_map(wpe), title))
else:
    print("docs/data/gpt2-124M-wpe.f32le is not here: run this in a clone of the repository")

# %% [markdown]
# ## Try next
#
# - Tokenize your name, a long German word or some code: how many tokens?
# - Find an analogy that works in this model, and one that fails.
# - `docs/embeddings.md` explains why tokens the model never saw all share one direction.
