"""The bundled `chars` model: a character-level GPT-2 small enough to live in a spreadsheet.

Its vocabulary is the characters of the bundled Shakespeare text (a byte-level BPE with no
merges, holding only those characters, plus <|endoftext|>); gpt2lab's trainer fits a 2-layer,
64-wide GPT-2 to the text, and the weights ship in float32 beside a card measured here.

    nice python recipes/chars/make.py            # work/chars/, then src/gpt2lab/models/chars/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import gpt2lab
from gpt2lab.files import write_atomic
from gpt2lab.tokenizer import ENDOFTEXT, Tokenizer, bytes_to_unicode
from gpt2lab.train.config import TrainConfig
from gpt2lab.train.data import (
    BUNDLED_DOCUMENT_CHARS,
    BUNDLED_VAL_FRACTION,
    TokenData,
    bundled_text,
    group_paragraphs,
    prepare,
)
from gpt2lab.train.trainer import evaluate, latest_checkpoint, train
from gpt2lab.weights.hf import save_hf_folder

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "gpt2lab" / "models" / "chars"
PROMPTS = ["ROMEO:", "First Citizen:\nWe are", "The king"]
SETTINGS = dict(
    n_layer=2,
    n_head=4,
    n_embd=64,
    block_size=64,
    dropout=0.0,
    batch_size=32,
    max_steps=3000,
    lr=3e-3,
    min_lr=1e-4,
    warmup_steps=100,
    weight_decay=0.1,
    dtype="float32",
    device="cpu",
    eval_interval=500,
    eval_batches=20,
    sample_prompt="ROMEO:",
    sample_tokens=80,
    checkpoint_interval=500,
)


def char_tokenizer(text: str) -> Tokenizer:
    """One token per character of ``text`` (sorted), then <|endoftext|>; no merges."""
    stand_in = bytes_to_unicode()
    chars = sorted(set(text))
    if any(len(c.encode()) != 1 for c in chars):
        raise SystemExit("a character-level vocabulary here needs single-byte characters")
    encoder = {stand_in[ord(c)]: i for i, c in enumerate(chars)}
    encoder[ENDOFTEXT] = len(encoder)
    return Tokenizer(encoder, [], backend="python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "chars")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    text = bundled_text("shakespeare").read_text(encoding="utf-8")
    tokenizer = char_tokenizer(text)
    tok_dir = args.work / "tokenizer"
    tokenizer.save(tok_dir)
    source = args.work / "shakespeare.txt"
    write_atomic(source, ENDOFTEXT.join(group_paragraphs(text, BUNDLED_DOCUMENT_CHARS)))
    data_dir = args.work / "data"
    prepare(
        [source],
        data_dir,
        tokenizer=tokenizer,
        tokenizer_name=str(tok_dir),
        val_fraction=BUNDLED_VAL_FRACTION,
        progress=False,
    )
    cfg = TrainConfig(data=str(data_dir), out_dir=str(args.work / "run"), **SETTINGS)  # type: ignore[arg-type]
    # An interrupted run (Ctrl-C saves a checkpoint) continues where it stopped.
    ckpt = train(cfg, resume=latest_checkpoint(Path(cfg.out_dir)) is not None, progress=True)

    trained = gpt2lab.load(ckpt)
    save_hf_folder(trained.config, trained.state_dict(), args.out)
    tokenizer.save(args.out)
    model = gpt2lab.load(args.out)
    data = TokenData.open(data_dir)
    no_autocast = torch.autocast("cpu", enabled=False)
    val = evaluate(model, data.val, 64, 16, 10**6, torch.device("cpu"), no_autocast)
    unigram = unigram_loss(data)
    samples = "\n\n".join(
        f"**{p!r}** → {model.generate_text(p, 40, top_k=10, temperature=0.8, seed=s)!r}"
        for s, p in enumerate(PROMPTS, 1)
    )
    meta = data.meta
    size = (args.out / "model.safetensors").stat().st_size
    card = f"""# `chars`: a character-level GPT-2 for spreadsheets

A GPT-2 so small that every one of its numbers fits in a workbook that LibreOffice or Excel
recomputes in seconds (`gpt2lab spreadsheet "ROMEO:" --model chars`; see docs/spreadsheet.md).
It reads and writes characters; it was trained here by gpt2lab's own trainer on the bundled
Shakespeare text. `gpt2lab.load("chars")`, `--model chars`.

| | |
| --- | --- |
| architecture | GPT-2: learned positions, pre-LayerNorm blocks, tanh GELU, tied embeddings; {model.config.n_layer} layers, {model.config.n_head} heads, {model.config.n_embd} wide, context {model.config.n_positions} |
| parameters | {model.num_parameters():,} |
| tokenizer | one token per character of the text: {tokenizer.vocab_size - 1} characters plus `<|endoftext|>` ({tokenizer.vocab_size} ids); a byte-level BPE with no merges, so other characters are an error |
| file | `model.safetensors`, float32, {size / 1e3:.0f} kB |
| training data | `shakespeare.txt` cut into documents of whole speeches; {meta["train_tokens"]:,} training characters |
| held-out data | {meta["val_documents"]} documents ({meta["val_tokens"]:,} characters), a tenth chosen by content hash |
| training | {cfg.max_steps} steps of {cfg.batch_size} x {cfg.block_size} characters, AdamW lr {cfg.lr} -> {cfg.min_lr} (cosine), float32 on one CPU core |
| loss (nats/character) | **held-out {val:.3f}** (these weights, every held-out character); a model that only knows how often each character occurs: {unigram:.3f} |

## Reproduce

```bash
nice python recipes/chars/make.py
```

## Samples

Top-k 10, temperature 0.8, seeds 1 to 3:

{samples}

## Limits

A toy: it spells plausible words and the shape of a play (names, colons, line breaks) and little
more. It is there to be read cell by cell, not to write.
"""
    write_atomic(args.out / "MODEL_CARD.md", card)
    print(f"held-out loss {val:.4f} (unigram {unigram:.4f}), {size} bytes -> {args.out}")


def unigram_loss(data: TokenData) -> float:
    """Cross-entropy of the held-out characters under the training characters' frequencies."""
    train_ids = torch.from_numpy(data.train.astype("int64"))
    val_ids = torch.from_numpy(data.val.astype("int64"))
    counts = torch.bincount(train_ids, minlength=int(val_ids.max()) + 1).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[val_ids].mean())


if __name__ == "__main__":
    main()
