"""Training speed, gpt2lab vs nanoGPT's train.py, on the same data, model shape and machine.

nanoGPT is not part of gpt2lab: clone it anywhere outside this repository and pass its folder.

    git clone https://github.com/karpathy/nanoGPT ../nanogpt
    python benchmarks/train_vs_nanogpt.py --nanogpt ../nanogpt [--steps 30]

Both train a GPT-2-architecture model from scratch, float32, no dropout, the same batch and
context, on TinyStories tokenized once by gpt2lab (nanoGPT reads the same uint16 train.bin /
val.bin format). Per-step times exclude evaluation and checkpoints; the median over the steps
after the first few counts. Ends with ``ratio X.XX`` = gpt2lab tokens/s / nanoGPT tokens/s.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gpt2lab.train.data import prepare

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train" / "tinystories"
WARMUP = 3  # steps left out of the median (allocation, first-touch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not (args.nanogpt / "train.py").is_file():
        raise SystemExit(f"{args.nanogpt} is not a nanoGPT checkout (no train.py)")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data" / "bench"  # nanoGPT looks in data/<dataset>/ of its working folder
        prepare([SHARED / "tinystories_sample_2M.txt"], data, progress=False)
        with open(data / "meta.pkl", "wb") as f:
            pickle.dump({"vocab_size": 50257}, f)  # same vocabulary size on both sides
        shape = {
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_embd": args.n_embd,
            "block_size": args.block_size,
            "batch_size": args.batch_size,
        }

        shutil.copy(args.nanogpt / "configurator.py", work)
        nano = [
            sys.executable,
            str(args.nanogpt / "train.py"),
            "--dataset=bench",
            "--device=cpu",
            "--compile=False",
            "--dtype=float32",
            "--dropout=0.0",
            "--bias=True",
            "--gradient_accumulation_steps=1",
            f"--max_iters={args.steps}",
            "--eval_interval=1000000",
            "--eval_iters=1",
            "--log_interval=1",
            "--always_save_checkpoint=False",
            f"--out_dir={work / 'nano-out'}",
            *(f"--{k}={v}" for k, v in shape.items()),
        ]
        out = subprocess.run(nano, cwd=work, capture_output=True, text=True, check=True).stdout
        nano_ms = [float(ms) for ms in re.findall(r"^iter \d+: .*time ([0-9.]+)ms", out, re.M)]

        ours = [
            str(Path(sys.executable).with_name("gpt2lab")),
            "train",
            "--data",
            str(data),
            "--out-dir",
            str(work / "ours"),
            "--max-steps",
            str(args.steps),
            "--eval-interval",
            "1000000",
            "--eval-batches",
            "1",
            "--dropout",
            "0.0",
            "--checkpoint-interval",
            "1000000",
            "--dtype",
            "float32",
            "--device",
            "cpu",
            *(f"--{k.replace('_', '-')}={v}" for k, v in shape.items()),
        ]
        subprocess.run(ours, capture_output=True, text=True, check=True)
        with open(work / "ours" / "loss.csv", newline="") as f:
            elapsed = [float(r["elapsed_s"]) for r in csv.DictReader(f)]
        ours_ms = [1000 * (b - a) for a, b in zip([0.0, *elapsed], elapsed)]

    tokens = args.batch_size * args.block_size
    nano_rate = tokens / (statistics.median(nano_ms[WARMUP:]) / 1000)
    ours_rate = tokens / (statistics.median(ours_ms[WARMUP:]) / 1000)
    print(f"{shape}, float32, CPU, {args.steps} steps, median after {WARMUP}")
    print(f"      nanoGPT: {nano_rate:8.0f} tokens/s")
    print(f"      gpt2lab: {ours_rate:8.0f} tokens/s")
    print(f"ratio {ours_rate / nano_rate:.2f}")


if __name__ == "__main__":
    main()
