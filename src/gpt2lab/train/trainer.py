"""Next-token prediction: the training loop, on one process or many (DDP under torchrun).

    batch of token windows ─model─▶ logits ─cross-entropy vs the next tokens─▶ loss ─backward─▶
    gradients ─clip─▶ AdamW step (lr from warmup + cosine) ─▶ repeat; every eval_interval steps:
    held-out loss, a sample, a checkpoint, the loss curve.

``train()`` reads as that loop: ``setup`` (data, model, optimizer, a resumed state), then
``train_step``, ``record`` (the log row; at eval steps ``evaluate_and_sample``) and ``save_run``
(the loss log, its plot and a checkpoint) until ``max_steps``. Settings are in ``train.config``;
checkpoints (which hold everything a run needs to continue exactly, and are ordinary model
folders: ``gpt2lab.load(run_dir)`` loads the latest one) in ``train.checkpoints``.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..errors import UsageError
from ..model import GPT2, eval_mode
from .checkpoints import (
    CSV_FIELDS,
    STATE_FILE,
    latest_checkpoint,
    load_training_state,
    output_error,
    remove_partial_checkpoints,
    save_checkpoint,
    write_log,
)
from .config import TrainConfig, lr_at, warmup_steps
from .run import BatchSampler, Distributed, Run, make_optimizer, setup

# What a run uses, importable from here as before train/ was split (the CLI, tests, notebooks).
__all__ = [
    "CSV_FIELDS",
    "STATE_FILE",
    "BatchSampler",
    "Distributed",
    "Run",
    "TrainConfig",
    "evaluate",
    "language_model_loss",
    "latest_checkpoint",
    "load_training_state",
    "lr_at",
    "make_optimizer",
    "remove_partial_checkpoints",
    "save_checkpoint",
    "setup",
    "train",
    "warmup_steps",
]


def language_model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting y[t] (the next token) from x[..t]; nats per token."""
    return model(x, y)


@torch.no_grad()
def evaluate(
    model: GPT2,
    tokens,
    block_size: int,
    batch_size: int,
    max_batches: int,
    device: torch.device,
    autocast,
) -> float:
    """Mean loss over consecutive, non-overlapping windows of the held-out tokens (in eval mode:
    no dropout; the model's mode is restored after)."""
    n_windows = min((len(tokens) - 1) // block_size, max_batches * batch_size)
    if n_windows < 1:
        raise UsageError(f"the validation split ({len(tokens)} tokens) is shorter than a window")
    total = 0.0
    with eval_mode(model):
        for chunk in (torch.arange(n_windows) * block_size).split(batch_size):
            rows = [
                torch.from_numpy(tokens[o : o + block_size + 1].astype("int64"))
                for o in chunk.tolist()
            ]
            batch = torch.stack(rows).to(device)
            with autocast:
                loss = language_model_loss(model, batch[:, :-1], batch[:, 1:])
            total += loss.item() * len(chunk)
    return total / n_windows


class _StopRequested:
    """Turns SIGINT/SIGTERM into a flag, so the loop can save a checkpoint before exiting."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> _StopRequested:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


@contextmanager
def _closing(bar: tqdm) -> Iterator[None]:
    """Close the progress bar however the loop ends, so an error message starts a new line."""
    try:
        yield
    finally:
        bar.close()


# --- one step, its record, a save --------------------------------------------------------------
def train_step(run: Run) -> tuple[float, float]:
    """One optimizer step over the global batch (gradient accumulation, DDP, clipping); returns
    (its learning rate, the mean training loss over all processes)."""
    cfg, ddp = run.cfg, run.ddp
    started = time.perf_counter()
    lr = lr_at(run.step, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    offsets = run.sampler.global_batch(cfg.batch_size * cfg.grad_accum * ddp.world)
    mine = offsets.view(ddp.world, cfg.grad_accum, cfg.batch_size)[ddp.rank]
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(cfg.grad_accum):
        x, y = run.sampler.windows(mine[micro], run.device)
        sync = micro == cfg.grad_accum - 1 or ddp.world == 1  # DDP: average gradients once
        ddp_net = run.net if isinstance(run.net, DistributedDataParallel) else None
        with nullcontext() if sync or ddp_net is None else ddp_net.no_sync(), run.autocast():
            loss = language_model_loss(run.net, x, y) / cfg.grad_accum
        run.scaler.scale(loss).backward()
        loss_sum += loss.detach()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if ddp.world > 1:
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    run.step += 1
    run.elapsed += time.perf_counter() - started
    train_loss = loss_sum.item()
    if not math.isfinite(train_loss):
        raise UsageError(f"the loss became {train_loss} at step {run.step}; lower --lr")
    return lr, train_loss


def evaluate_and_sample(run: Run) -> tuple[float, str]:
    """Held-out loss and a sample from the prompt: the progress the log shows."""
    cfg, model = run.cfg, run.model
    val = evaluate(
        model,
        run.data.val,
        cfg.block_size,
        cfg.batch_size,
        cfg.eval_batches,
        run.device,
        run.autocast(),
    )
    n_sample = min(cfg.sample_tokens, model.config.n_positions // 2)
    sample = model.generate_text(
        cfg.sample_prompt, n_sample, top_k=40, seed=cfg.seed, truncate="left"
    )
    return val, f"  {cfg.sample_prompt}{sample}"


def record(run: Run, lr: float, train_loss: float, bar: tqdm) -> None:
    """First process: the step's row of the log, the progress bar and, at eval steps, the
    held-out loss and a sample."""
    if not run.ddp.is_main:
        return
    cfg, step = run.cfg, run.step
    row = {
        "step": step,
        "tokens": step * run.tokens_per_step,
        "lr": f"{lr:.6g}",
        "train_loss": f"{train_loss:.6f}",
        "val_loss": "",
        "elapsed_s": f"{run.elapsed:.4f}",
    }
    if step % cfg.eval_interval == 0 or step == cfg.max_steps:
        val, sample = evaluate_and_sample(run)
        row["val_loss"] = f"{val:.6f}"
        tqdm.write(f"step {step}: train {train_loss:.4f}, val {val:.4f}\n{sample}")
    run.rows.append(row)
    tok_s = run.tokens_per_step * step / max(run.elapsed, 1e-9)
    bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}")
    bar.update(1)


def checkpoint(run: Run) -> Path | None:
    """Save a checkpoint: a collective, every process takes part, the first one writes."""
    rng: list[Tensor | None] = [torch.get_rng_state()]
    if run.ddp.world > 1:
        rng = [None] * run.ddp.world
        dist.all_gather_object(rng, torch.get_rng_state())
    if not run.ddp.is_main:
        return None
    state = {
        "step": run.step,
        "elapsed_s": run.elapsed,
        "optimizer": run.optimizer.state_dict(),
        "data_rng": run.sampler.generator.get_state(),
        "torch_rng": rng,
        "scaler": run.scaler.state_dict(),
        "train_config": asdict(run.cfg),
    }
    return save_checkpoint(run.run_dir, run.model, state, run.cfg.keep_checkpoints)


def save_run(run: Run) -> Path | None:
    """The loss log and its plot, then a checkpoint; returns the checkpoint (first process)."""
    if run.ddp.is_main:
        try:
            write_log(run.log_path, run.rows)
            _plot(run.log_path)
        except OSError as e:
            raise output_error(f"cannot write {run.log_path}", e, run.run_dir) from None
    return checkpoint(run)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run (or, with ``resume``, continue) training; return the final checkpoint folder."""
    run = setup(cfg, resume)
    main = run.ddp.is_main
    show = progress and main
    bar = tqdm(
        total=cfg.max_steps,
        initial=run.step,
        desc="train",
        unit="step",
        disable=not show,
        dynamic_ncols=True,
    )
    last_saved = None
    with _StopRequested() as stop, _closing(bar):
        if run.step == 0 and main:  # the starting point, so a fine-tune shows what it changed
            val, sample = evaluate_and_sample(run)
            tqdm.write(f"step 0: val {val:.4f}\n{sample}")
        while run.step < cfg.max_steps:
            lr, train_loss = train_step(run)
            record(run, lr, train_loss, bar)
            due = run.step % cfg.checkpoint_interval == 0 or run.step == cfg.max_steps
            if stop.requested or due:
                last_saved = save_run(run)
            if stop.requested:
                bar.close()
                if main:
                    print(
                        f"stopped at step {run.step}; checkpoint saved. Continue with --resume",
                        file=sys.stderr,
                    )
                break
    bar.close()
    if run.ddp.world > 1:
        dist.barrier()
    return last_saved or latest_checkpoint(run.run_dir) or run.run_dir


def _plot(log_path: Path) -> None:
    from ..viz.plots import loss_curve, save

    save(loss_curve(log_path), log_path.with_suffix(".png"))
