"""The ladder: from GPT-2 to LLaMA one change at a time, each model trained on the same tokens.

    python recipes/tiny/make_data.py --out work/tiny        # TinyStories, GPT-2's tokenizer
    python recipes/ladder/run.py --data work/tiny/data --out work/ladder-cpu --size cpu
    python recipes/ladder/run.py --data work/tiny/data --out work/ladder-gpu --size gpu

Nine runs: GPT-2, one run per single change from it (+RoPE, +RMSNorm, +SwiGLU at the MLP's
parameter count, +GQA, no biases, post-LN as in GPT-1, sinusoidal positions as in the 2017
Transformer) and the LLaMA-style model that makes all of LLaMA's changes at once. Every run has
the same shape, seed, learning-rate schedule and batches (the batch sampler draws the same
windows in the same order from the same seed); only the architecture switches differ. Each run
is an ordinary ``gpt2lab train`` run with ``arch`` set (see gpt2lab.train.config).

Writes into --out:

    runs/NAME/          each run: loss.csv, loss.png, its checkpoint (gpt2lab.load reads it),
                        result.json
    ladder.json         the settings and, per run, its switches, parameters by component, KV
                        cache bytes per token, held-out loss, tokens/s and curve
    ladder.md           the table
    loss_curves.png     held-out loss against tokens seen, every run

Run it again with the same settings and finished runs are skipped and an interrupted one resumes
from its checkpoint. A run that fails says so in one line; the others go on, and the exit code
is 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gpt2lab.config import kv_cache_bytes_per_token, parameter_counts
from gpt2lab.errors import GPT2LabError, UsageError
from gpt2lab.files import write_atomic
from gpt2lab.train.checkpoints import latest_checkpoint, load_training_state, read_log
from gpt2lab.train.config import TrainConfig
from gpt2lab.train.data import TokenData
from gpt2lab.train.trainer import train
from gpt2lab.viz import plots


@dataclass(frozen=True)
class Size:
    """The shape and length shared by every run of the ladder."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    steps: int
    lr: float
    evals: int = 6  # points on each held-out curve
    saves: int = 2  # checkpoints per run: a killed run resumes from the last one
    sample_tokens: int = 24  # a sample at each evaluation: every architecture writes text
    eval_batches: int = 1000  # enough for the whole held-out split: the same tokens every time


SIZES = {
    # a smoke test in seconds (tests/test_ladder.py)
    "toy": Size(
        1, 4, 32, block_size=16, batch_size=4, steps=4, lr=3e-3, evals=2, saves=1, sample_tokens=4
    ),
    # all nine runs in under an hour on 2 CPU cores (docs/architectures.md)
    "cpu": Size(4, 4, 128, block_size=128, batch_size=8, steps=300, lr=2e-3, evals=4),
    # one GPU, a few minutes for all nine: 4 times the tokens per step, blocks 32 times as large
    "gpu": Size(8, 8, 512, block_size=256, batch_size=32, steps=300, lr=1e-3, saves=1),
}
SEED = 1337
BOLD = ("GPT-2", "LLaMA")  # the two ends of the ladder, drawn thicker


def swiglu_hidden(n_embd: int) -> int:
    """SwiGLU's hidden size at the parameters of GPT-2's MLP: three matrices of C·F instead of
    two of C·4C, so F = 2/3 · 4C, rounded to a multiple of 8 (as LLaMA rounds it to 256)."""
    return 8 * round(2 * 4 * n_embd / 3 / 8)


@dataclass(frozen=True)
class Rung:
    """One run: its folder name, its label in the table, what it changes, its switches."""

    name: str
    label: str
    change: str
    arch: dict[str, Any]


def rungs(size: Size) -> list[Rung]:
    """GPT-2, each change from it alone, LLaMA (all of them), then the older choices."""
    rope = {"positions": "rope"}
    rmsnorm = {"norm": "rmsnorm"}
    swiglu = {"activation": "swiglu", "n_inner": swiglu_hidden(size.n_embd)}
    gqa = {"n_kv_head": size.n_head // 2}
    no_bias = {"qkv_bias": False, "attn_out_bias": False, "mlp_bias": False}
    return [
        Rung("gpt2", "GPT-2", "learned positions, LayerNorm (pre), GELU, MHA, biases", {}),
        Rung("rope", "+RoPE", "q, k rotated by position; no W_P", rope),
        Rung("rmsnorm", "+RMSNorm", "x / rms(x) · g: no centring, no bias", rmsnorm),
        Rung("swiglu", "+SwiGLU", f"gated MLP, hidden {swiglu['n_inner']} (2/3 · 4C)", swiglu),
        Rung("gqa", "+GQA", f"{gqa['n_kv_head']} key/value heads for {size.n_head}", gqa),
        Rung("no-bias", "−biases", "no bias in attention or MLP", no_bias),
        Rung("llama", "LLaMA", "all five changes above", rope | rmsnorm | swiglu | gqa | no_bias),
        Rung(
            "post-ln",
            "post-LN",
            "norm after the residual add (GPT-1), no final norm",
            {"norm_position": "post", "final_norm": False},
        ),
        Rung(
            "sinusoidal",
            "sinusoidal",
            "fixed sin/cos positions (2017)",
            {"positions": "sinusoidal"},
        ),
    ]


def train_config(rung: Rung, size: Size, data: Path, out: Path, device: str) -> TrainConfig:
    """The run's settings: the ladder's shape and schedule, this rung's switches."""
    every = max(1, size.steps // size.evals)
    return TrainConfig(
        data=str(data),
        out_dir=str(out / "runs" / rung.name),
        n_layer=size.n_layer,
        n_head=size.n_head,
        n_embd=size.n_embd,
        block_size=size.block_size,
        arch=dict(rung.arch),
        batch_size=size.batch_size,
        max_steps=size.steps,
        lr=size.lr,
        min_lr=size.lr / 10,
        eval_interval=every,
        eval_batches=size.eval_batches,
        checkpoint_interval=max(1, size.steps // size.saves),
        keep_checkpoints=1,
        sample_tokens=size.sample_tokens,
        seed=SEED,
        device=device,
    )


def previous(cfg: TrainConfig) -> tuple[dict[str, Any] | None, Path | None]:
    """What an earlier call left in the run's folder: its result, or a checkpoint to resume
    from; a folder of a run with other settings is refused."""
    run_dir = Path(cfg.out_dir)
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    ckpt = latest_checkpoint(run_dir)
    saved = result["train_config"] if result else ckpt and load_training_state(ckpt)["train_config"]
    if saved and {**saved, "out_dir": cfg.out_dir} != asdict(cfg):
        raise UsageError(f"{run_dir} holds a run with other settings; pass another --out")
    return result, ckpt


def throughput(rows: Sequence[dict[str, str]]) -> float:
    """Training tokens per second over the second half of the run (the first steps also pay for
    warming up: memory, kernels)."""
    last = rows[-1]
    start = rows[len(rows) // 2 - 1] if len(rows) >= 2 else {"tokens": "0", "elapsed_s": "0"}
    tokens = int(last["tokens"]) - int(start["tokens"])
    seconds = float(last["elapsed_s"]) - float(start["elapsed_s"])
    return tokens / seconds if seconds > 0 else math.nan


def run_rung(rung: Rung, cfg: TrainConfig, vocab_size: int) -> dict[str, Any]:
    """Train one rung (or resume it, or reuse its result) and return its row of ladder.json."""
    run_dir = Path(cfg.out_dir)
    result, ckpt = previous(cfg)
    if result is not None:
        print(f"{rung.label}: done before, reusing {run_dir / 'result.json'}")
        return result
    train(cfg, resume=ckpt is not None)
    rows = read_log(run_dir / "loss.csv", cfg.max_steps)
    if not rows or int(rows[-1]["step"]) < cfg.max_steps:
        raise KeyboardInterrupt  # train() stopped on Ctrl-C with a checkpoint saved
    config = cfg.model_config(vocab_size)
    curve = [(int(r["tokens"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    result = {
        "name": rung.name,
        "label": rung.label,
        "change": rung.change,
        "arch": rung.arch,
        "config": config.to_dict(),
        "parameters": parameter_counts(config),
        "kv_cache_bytes_per_token": kv_cache_bytes_per_token(config),
        "held_out_loss": curve[-1][1],
        "tokens_per_s": throughput(rows),
        "tokens": int(rows[-1]["tokens"]),
        "train_seconds": float(rows[-1]["elapsed_s"]),
        "curve": curve,
        "train_config": asdict(cfg),
    }
    write_atomic(run_dir / "result.json", json.dumps(result, indent=1) + "\n")
    return result


def table(results: Sequence[dict[str, Any]], failed: dict[str, str]) -> str:
    """The ladder as a Markdown table, GPT-2 first; Δ is the held-out loss minus GPT-2's."""
    base = next((r["held_out_loss"] for r in results if r["name"] == "gpt2"), None)
    lines = [
        "| run | change | held-out loss | Δ vs GPT-2 | tokens/s | parameters | "
        "in the blocks | KV cache bytes/token (float32) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        p = r["parameters"]
        blocks = p["attention"] + p["mlp"] + p["norms"]
        delta = "—" if base is None else f"{r['held_out_loss'] - base:+.4f}"
        lines.append(
            f"| {r['label']} | {r['change']} | {r['held_out_loss']:.4f} | "
            f"{delta} | {r['tokens_per_s']:,.0f} | {p['total']:,} | "
            f"{blocks:,} | {r['kv_cache_bytes_per_token']:,} |"
        )
    lines += [f"| {label} | failed: {why} | | | | | | |" for label, why in failed.items()]
    return "\n".join(lines) + "\n"


def write_tables(
    out: Path, summary: dict[str, Any], results: list[dict[str, Any]], failed: dict[str, str]
) -> None:
    """ladder.json and ladder.md, from the results so far."""
    summary = {**summary, "runs": results, "failed": failed}
    write_atomic(out / "ladder.json", json.dumps(summary, indent=1) + "\n")
    heading = (
        f"# The ladder, size {summary['size']}: {summary['tokens']:,} tokens per run, "
        f"seed {SEED}, on {summary['device']}\n\n"
    )
    write_atomic(out / "ladder.md", heading + table(results, failed))


def plot(out: Path, size: str, results: list[dict[str, Any]]) -> None:
    """loss_curves.png: every run's held-out loss against the tokens it has seen."""
    curves = {r["label"]: r["curve"] for r in results}
    figure = plots.loss_curves(curves, title=f"held-out loss, ladder size {size}", bold=BOLD)
    plots.save(figure, out / "loss_curves.png")


def device_name(device: str) -> str:
    """The device the runs train on, in words: cpu, or the GPU's name."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="a folder made by `gpt2lab prepare`"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and results")
    parser.add_argument("--size", choices=SIZES, default="cpu", help="model and run size")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: the size's)")
    parser.add_argument("--only", help="comma-separated run names (default: all nine)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if any), cpu or cuda")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    size = SIZES[args.size] if args.steps is None else replace(SIZES[args.size], steps=args.steps)
    if size.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {size.steps}")
    chosen = rungs(size)
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {r.name for r in chosen})
        if unknown:
            raise UsageError(
                f"--only: no run {', '.join(unknown)}; runs: {', '.join(r.name for r in chosen)}"
            )
        chosen = [r for r in chosen if r.name in names]
    data = TokenData.open(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = [train_config(r, size, args.data, args.out, args.device) for r in chosen]
    for cfg in configs:  # every run's settings and folder, before the first one trains
        cfg.validate()
        previous(cfg)
    tokens = size.steps * size.batch_size * size.block_size
    summary = {
        "size": args.size,
        "shape": asdict(size),
        "seed": SEED,
        "tokens": tokens,
        "device": device_name(args.device),
        "data": {k: data.meta[k] for k in ("train_tokens", "val_tokens", "vocab_size")},
    }
    results: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for i, (rung, cfg) in enumerate(zip(chosen, configs), 1):
        switches = ", ".join(f"{k}={v}" for k, v in rung.arch.items()) or "GPT-2's choices"
        print(f"[{i}/{len(chosen)}] {rung.label}: {switches}", flush=True)
        try:
            results.append(run_rung(rung, cfg, data.meta["vocab_size"]))
        except KeyboardInterrupt:
            plot(args.out, args.size, results)
            print(
                f"ladder: stopped in {rung.label}; run the same command to resume", file=sys.stderr
            )
            return 130
        except Exception as e:  # one run failing (a bad switch, out of memory) stops only itself
            why = (str(e).splitlines() or [type(e).__name__])[0]
            kind = "" if isinstance(e, GPT2LabError) else f"{type(e).__name__}: "
            failed[rung.label] = f"{kind}{why}"
            print(f"ladder: {rung.label} failed: {kind}{why}", file=sys.stderr, flush=True)
        write_tables(args.out, summary, results, failed)
    plot(args.out, args.size, results)
    print(f"wrote {args.out / 'ladder.md'}, ladder.json, loss_curves.png\n")
    print((args.out / "ladder.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GPT2LabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
