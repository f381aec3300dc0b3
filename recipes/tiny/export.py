"""Export a training run as the bundled `tiny` model: float16 weights (int8 with per-channel
scales when float16 would not fit the package's 20 MB) and a model card whose numbers are
measured here, on the exported weights.

    python recipes/tiny/export.py --run work/tiny/run --data work/tiny/data
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import torch

import gpt2lab
from gpt2lab.train.data import TokenData
from gpt2lab.train.trainer import evaluate, latest_checkpoint, load_training_state
from gpt2lab.viz.plots import loss_curve
from gpt2lab.weights.hf import quantize_state, save_hf_folder

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "gpt2lab" / "models" / "tiny"
MAX_BYTES = 20_000_000  # the limit for the bundled weights (tests/test_tiny.py checks it)
PROMPTS = [
    "Once upon a time",
    "Lily and Tom went to the park. They",
    "The little dog was sad because",
]


def read_stages(runs: list[Path]) -> tuple[list[dict], list[dict]]:
    """Each run's settings, steps and time (from its last checkpoint), and the loss log of all
    runs as one, later runs' steps and tokens counted on from where the one before stopped."""
    stages, rows = [], []
    step0 = tokens0 = 0
    for run in runs:
        state = load_training_state(latest_checkpoint(run))
        stages.append({**state["train_config"], "step": state["step"], "s": state["elapsed_s"]})
        with open(run / "loss.csv", newline="") as f:
            for row in csv.DictReader(f):
                if int(row["step"]) > state["step"]:  # logged after the checkpoint: not in it
                    break
                row["step"] = str(int(row["step"]) + step0)
                row["tokens"] = str(int(row["tokens"]) + tokens0)
                rows.append(row)
        step0, tokens0 = int(rows[-1]["step"]), int(rows[-1]["tokens"])
    return stages, rows


def describe(stage: dict, number: int) -> str:
    start = "from scratch" if stage["init"] == "scratch" else f"from stage {number - 1}'s weights"
    return (
        f"stage {number}: {stage['step']} steps {start}, AdamW lr {stage['lr']} -> "
        f"{stage['min_lr']} (warmup {stage['warmup_steps']}, cosine), {stage['s'] / 3600:.2f} h"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[ROOT / "work" / "tiny" / name for name in ("run", "run2", "run3")],
        help="the training runs in order; the last one's latest checkpoint is exported",
    )
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "tiny" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--history", default="", help="how the run went, for the card (Markdown)")
    args = parser.parse_args()

    stages, rows = read_stages(args.runs)
    ckpt = latest_checkpoint(args.runs[-1])
    trained = gpt2lab.load(ckpt)
    config = trained.config.replace(dropout=0.0)
    half = {name: t.half() for name, t in trained.state_dict().items()}
    # The token embedding alone is 50,257 x n_embd x 2 bytes in float16: wider than 160 needs int8.
    int8 = sum(t.numel() * t.element_size() for t in half.values()) > MAX_BYTES
    state = trained.state_dict() if int8 else half
    size = sum(t.numel() * t.element_size() for t in quantize_state(state).values()) if int8 else 0
    if size > MAX_BYTES:  # checked before anything in the package is overwritten
        raise SystemExit(
            f"{ckpt}: {size / 1e6:.1f} MB even in int8, over the {MAX_BYTES / 1e6:.0f} MB the "
            "package ships"
        )
    save_hf_folder(config, state, args.out, int8=int8)
    stored = (
        "int8 weight matrices with one bfloat16 scale per output channel" if int8 else "float16"
    )

    model = gpt2lab.load(args.out)  # what users get: float32 in memory
    data = TokenData.open(args.data)
    val_loss = evaluate(
        model,
        data.val,
        config.n_positions,
        16,
        10**6,
        torch.device("cpu"),
        torch.autocast("cpu", enabled=False),
    )
    recent = [float(r["train_loss"]) for r in rows[-50:]]
    train_loss = sum(recent) / len(recent)
    plan, last = stages[0], stages[-1]
    hours = sum(stage["s"] for stage in stages) / 3600
    tokens = int(rows[-1]["tokens"])
    samples = [
        (p, model.generate_text(p, 80, top_k=40, temperature=0.8, seed=seed))
        for seed, p in enumerate(PROMPTS, 1)
    ]
    greedy = model.generate_text(PROMPTS[0], 60, greedy=True)

    stopped = ""
    if last["step"] < last["max_steps"]:
        stopped = (
            f"The last stage is the first {last['step']} steps of its {last['max_steps']}-step "
            "schedule (its learning rate had not finished decaying)."
        )
    schedule = "; ".join(describe(stage, i) for i, stage in enumerate(stages, 1))
    commands = "\n".join(
        f"gpt2lab train --config recipes/tiny/{name}"
        for name in ["tiny.toml", *(f"tiny-{n}.toml" for n in range(2, len(stages) + 1))]
    )
    target = (
        "which this version meets"
        if val_loss <= 2.8
        else f"this version reaches {val_loss:.2f}. More training (a longer schedule, or a GPU) "
        "is the way down"
    )
    size_mb = (args.out / "model.safetensors").stat().st_size / 1e6
    n_params = model.num_parameters()
    embed = model.parameter_counts()["token embedding wte (= output layer)"]
    meta = data.meta
    sample_text = "\n\n".join(f"**{p}**{s}" for p, s in samples)
    card = f"""# `tiny`: gpt2lab's bundled model

A small language model with GPT-2's architecture and GPT-2's tokenizer (every id means what it
means in GPT-2), trained by gpt2lab's own trainer on a CPU core. It ships inside the package so
that everything in gpt2lab works offline: `gpt2lab.load("tiny")`, `--model tiny`. It writes
simple children's stories; it knows nothing else.

| | |
| --- | --- |
| architecture | GPT-2: learned positions, pre-LayerNorm blocks, tanh GELU, tied embeddings; {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, context {config.n_positions} |
| parameters | {n_params:,} ({embed:,} of them the token embedding, which is also the output layer) |
| tokenizer | GPT-2's byte-level BPE, 50,257 tokens |
| file | `model.safetensors`, {stored}, {size_mb:.1f} MB; loads as float32 |
| training data | TinyStories: `tinystories_sample_2M.txt` (original casing) plus the stories of `tinystories_slice_4M_lowercased.txt` that are not in it, re-cased by `make_data.py`; {meta["train_tokens"]:,} training tokens |
| held-out data | {meta["val_documents"]} stories ({meta["val_tokens"]:,} tokens) of the original-case sample, chosen by content hash; never trained on, in any casing |
| training | {rows[-1]["step"]} steps of {plan["batch_size"]} x {plan["block_size"]} tokens ({tokens:,} tokens, {tokens / meta["train_tokens"]:.1f} epochs), weight decay {plan["weight_decay"]}, dropout {plan["dropout"]}, {plan["dtype"]} on one CPU core; {schedule}; {hours:.2f} hours in all |
| loss (nats/token) | training {train_loss:.3f} (mean of the last 50 steps); **held-out {val_loss:.3f}** (these exported weights, every held-out token) |

{stopped}

{args.history}

The target for this model is a held-out loss of at most 2.8 nats/token, {target}.

## Reproduce

```bash
python recipes/tiny/make_data.py --out work/tiny
{commands}
python recipes/tiny/export.py --data work/tiny/data
```

The configurations are in `recipes/tiny/`; the loss curve of the whole training is `loss.png`
beside this card.

## Samples

Sampled with top-k 40, temperature 0.8, seeds 1 to 3:

{sample_text}

Greedy: **{PROMPTS[0]}**{greedy}

## Limits

Trained on about a million tokens of simple stories: it repeats itself, loses track of characters,
and has no knowledge of the world. It is a teaching and testing model, not a substitute for GPT-2.
"""
    while "\n\n\n" in card:
        card = card.replace("\n\n\n", "\n\n")
    (args.out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "loss.csv"
        with open(log, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        loss_curve(log).savefig(args.out / "loss.png", dpi=120)
    print(f"exported {ckpt}: held-out loss {val_loss:.4f}, {size_mb:.1f} MB -> {args.out}")


if __name__ == "__main__":
    main()
