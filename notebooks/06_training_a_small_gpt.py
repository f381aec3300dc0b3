"""Notebook 6: a GPT trained from nothing, on a laptop CPU. Build with
`python notebooks/build.py 06` (a few minutes)."""

# %% [markdown]
# # 6. Training your own small GPT
#
# Every model in the other notebooks learned one thing: to predict the next token. This notebook
# does the whole job from the start, on the excerpt of Shakespeare that ships with gpt2lab:
#
# 1. learn a **tokenizer** (byte-pair encoding) from the text itself;
# 2. cut the text into token ids;
# 3. train a small GPT-2 from random weights, watching the loss fall and the samples turn from
#    noise into something that looks like a play.
#
# It runs on a CPU in a minute or two. The model is tiny (under a million numbers, where GPT-2
# 124M has 124 million) and the run short, so expect the *shape* of Shakespeare (speakers' names
# in capitals, short lines) rather than sense.

# %%
import tempfile
from pathlib import Path

import torch

import gpt2lab
from gpt2lab.train.bpe_train import train_tokenizer
from gpt2lab.train.config import TrainConfig
from gpt2lab.train.data import bundled_text, prepare
from gpt2lab.train.trainer import train
from gpt2lab.viz import plots

# %matplotlib inline

torch.manual_seed(0)
work = Path(tempfile.mkdtemp(prefix="gpt2lab-notebook-"))  # everything this notebook writes
text = bundled_text("shakespeare").read_text(encoding="utf-8")
print(f"{len(text):,} characters of Shakespeare; the start:\n")
print(text[:300])

# %% [markdown]
# ## 1. A tokenizer of our own
#
# GPT-2's tokenizer has 50,257 tokens learned from web text. A small model is faster with a small
# vocabulary, learned from its own text. `train_tokenizer` starts from the 256 byte values and
# repeatedly merges the most frequent pair of neighbours, until the vocabulary has 512 entries.

# %%
tok = train_tokenizer(text.split("\n\n"), vocab_size=512)
line = "GLOUCESTER: Now is the winter of our discontent"
pieces = [tok.decode([i]) for i in tok.encode(line)]
print(f"{tok.vocab_size} tokens; {line!r} becomes {len(pieces)} tokens:")
print(pieces)

# %% [markdown]
# ## 2. Text -> token ids
#
# `prepare` cuts the text into documents (here, the speeches between blank lines), holds out 5%
# of them to measure the loss on text the model never trains on, and writes the token ids to
# disk.

# %%
tok_dir = work / "tokenizer"
tok.save(tok_dir)
meta = prepare(
    [bundled_text("shakespeare")],
    work / "data",
    tokenizer=tok,
    tokenizer_name=str(tok_dir),
    separator="\n\n",
    progress=False,
)
print(f"train: {meta['train_tokens']:,} tokens in {meta['train_documents']} speeches")
print(f"held out: {meta['val_tokens']:,} tokens in {meta['val_documents']} speeches")

# %% [markdown]
# ## 3. Train
#
# A GPT-2 with 2 blocks, 4 heads and vectors of 96 numbers, reading 64 tokens at a time. Each
# step shows it 16 such pieces of text, measures how badly it predicted each next token (the
# **cross-entropy loss**, in nats: ln 512 ≈ 6.2 means guessing blindly), and nudges every weight
# to do better (AdamW). Every 100 steps it measures the held-out loss and writes a sample after
# "GLOUCESTER:".

# %%
cfg = TrainConfig(
    data=str(work / "data"),
    out_dir=str(work / "run"),
    init="scratch",
    n_layer=2,
    n_head=4,
    n_embd=96,
    block_size=64,
    batch_size=16,
    max_steps=300,
    lr=3e-3,
    min_lr=3e-4,
    eval_interval=100,
    eval_batches=4,
    checkpoint_interval=300,
    sample_prompt="GLOUCESTER:",
    sample_tokens=40,
    seed=1337,
    device="cpu",
)
checkpoint = train(cfg, progress=False)

# %% [markdown]
# ## The loss curve
#
# The training loss of every step (faint), its running mean, and the held-out loss at each
# evaluation. When the held-out loss stops following the training loss down, the model has
# started to learn its training text by heart.

# %% tags=["picture"]
plots.loss_curve(work / "run" / "loss.csv")

# %% [markdown]
# ## Use it
#
# The checkpoint is a normal model folder: `gpt2lab.load` reads it, and everything in the other
# notebooks works on it (`generate`, `run_with_cache`, the logit lens, ...).

# %%
bard = gpt2lab.load(checkpoint)
print(f"{bard.num_parameters():,} parameters")
print("GLOUCESTER:" + bard.generate_text("GLOUCESTER:", 50, top_k=20, seed=1))

# %% [markdown]
# ## Try next
#
# - More steps (`max_steps=2000`) and a wider model (`n_embd=192`): the loss keeps falling.
# - The command line does the same: `gpt2lab train-tokenizer`, `gpt2lab prepare`, then
#   `gpt2lab train` (see the README's "Train your own").
# - Fine-tune `tiny` instead of starting from nothing: `init="tiny"`, with GPT-2's tokenizer.
