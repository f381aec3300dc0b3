"""Next-token prediction: the training loop, on one process or many (DDP under torchrun).

    batch of token windows ─model─▶ logits ─cross-entropy vs the next tokens─▶ loss ─backward─▶
    gradients ─clip─▶ AdamW step (lr from warmup + cosine) ─▶ repeat; every eval_interval steps:
    held-out loss, a sample, a checkpoint, the loss curve.

Checkpoints hold everything a run needs to continue exactly (weights, optimizer, step, data
sampler and RNG state), are written to a temporary folder and renamed into place, and are
ordinary model folders: ``gpt2lab.load(run_dir)`` loads the latest one.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from tqdm import tqdm

from ..config import GPT2Config
from ..errors import CheckpointError, OutputError, UsageError
from ..model import GPT2
from ..tokenizer import Tokenizer, get_tokenizer
from ..weights import RUN_POINTER, build_model, load, run_checkpoint, save_pretrained
from .data import TokenData, bundled_texts, open_data

STATE_FILE = "training_state.pt"
CSV_FIELDS = ("step", "tokens", "lr", "train_loss", "val_loss", "elapsed_s")


@dataclass
class TrainConfig:
    """Every setting of a run. CLI flags and TOML keys use these names (``--max-steps``).

    ``data`` is a folder written by ``gpt2lab prepare``, or the name of a text bundled with
    gpt2lab (``shakespeare``), which the run tokenizes into its own folder. ``warmup_steps``
    left as None scales with the run: min(100, max_steps // 10), so that a short run reaches its
    learning rate; a value given is kept as it is.
    """

    data: str = field(
        default="",
        metadata={
            "help": "folder written by `gpt2lab prepare`, or a text bundled with gpt2lab: "
            + ", ".join(bundled_texts())
        },
    )
    out_dir: str = "out"
    init: str = field(
        default="scratch",
        metadata={"help": "scratch (default), tiny, a Hub id such as gpt2, or a model folder"},
    )
    # model shape (from scratch only)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256  # context length trained on (= n_positions from scratch)
    dropout: float = 0.0
    # optimisation
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int | None = field(
        default=None,
        metadata={
            "type": int,
            "help": "steps of linear warmup (default: min(100, max_steps // 10))",
        },
    )
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 turns clipping off
    dtype: str = "auto"  # auto, float32, bfloat16, float16 (autocast)
    device: str = "auto"
    seed: int = 1337
    # evaluation, samples, checkpoints
    eval_interval: int = 100
    eval_batches: int = 20
    sample_prompt: str = "Once upon a time"
    sample_tokens: int = 40
    checkpoint_interval: int = 100
    keep_checkpoints: int = 2

    def validate(self) -> None:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "grad_accum",
            "max_steps",
            "eval_interval",
            "eval_batches",
            "checkpoint_interval",
            "keep_checkpoints",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.data:
            raise UsageError("no training data: pass --data DIR (made by `gpt2lab prepare`)")
        if not 0 < self.lr < math.inf or not 0 <= self.min_lr <= self.lr:
            raise UsageError(f"need 0 <= min_lr <= lr and lr > 0, got {self.min_lr}, {self.lr}")
        at_least_zero = ("warmup_steps", "sample_tokens", "weight_decay", "grad_clip")
        for name in at_least_zero:
            value = getattr(self, name)
            if value is None:  # (warmup_steps: scales with max_steps)
                continue
            if not 0 <= value < math.inf:  # (also refuses NaN)
                raise UsageError(f"{name} must be >= 0, got {value}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UsageError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UsageError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read training config {path}: {e}") from None
        return cls.from_dict(values)


def warmup_steps(cfg: TrainConfig) -> int:
    """The run's warmup: as given, or min(100, max_steps // 10) so a short run is not all warmup."""
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return min(100, cfg.max_steps // 10)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over the warmup steps, then cosine decay to ``min_lr``."""
    warmup = warmup_steps(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.max_steps - warmup)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (embeddings, linear weights) only, not biases or norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def language_model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting y[t] (the next token) from x[..t]; nats per token."""
    return model(x, y)


class BatchSampler:
    """Random windows of ``block_size + 1`` tokens, drawn for the whole global batch at once.

    Every process draws the same offsets from the same generator and takes its own slice, so a
    run on N processes sees exactly the sequences a single process with N x grad_accum sees.
    """

    def __init__(self, tokens, block_size: int, seed: int) -> None:
        if len(tokens) <= block_size + 1:
            raise UsageError(
                f"the training split has {len(tokens)} tokens, fewer than one window of "
                f"block_size + 1 = {block_size + 1}"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.generator = torch.Generator().manual_seed(seed)

    def global_batch(self, n: int) -> torch.Tensor:
        return torch.randint(len(self.tokens) - self.block_size - 1, (n,), generator=self.generator)

    def windows(self, offsets: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        rows = [
            torch.from_numpy(self.tokens[o : o + self.block_size + 1].astype("int64"))
            for o in offsets.tolist()
        ]
        batch = torch.stack(rows).to(device)
        return batch[:, :-1], batch[:, 1:]


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
    """Mean loss over consecutive, non-overlapping windows of the held-out tokens."""
    was_training = model.training
    model.eval()
    n_windows = min((len(tokens) - 1) // block_size, max_batches * batch_size)
    if n_windows < 1:
        raise UsageError(f"the validation split ({len(tokens)} tokens) is shorter than a window")
    offsets = torch.arange(n_windows) * block_size
    total = 0.0
    for chunk in offsets.split(batch_size):
        rows = [
            torch.from_numpy(tokens[o : o + block_size + 1].astype("int64")) for o in chunk.tolist()
        ]
        batch = torch.stack(rows).to(device)
        with autocast:
            total += language_model_loss(model, batch[:, :-1], batch[:, 1:]).item() * len(chunk)
    model.train(was_training)
    return total / n_windows


# --- checkpoints ------------------------------------------------------------------------------
def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# A full disk surfaces as OSError, or from safetensors and torch.save as their own errors.
_WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)


def _reason(e: BaseException) -> str:
    """Why a write failed: the OSError behind it (torch.save wraps it in a RuntimeError)."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return (str(e).splitlines() or [type(e).__name__])[0]


def _output_error(what: str, e: BaseException, run_dir: Path) -> OutputError:
    """``what`` failed: say why (e.g. no space left on device) and what is still safe."""
    reason = _reason(e)
    ckpt = latest_checkpoint(run_dir)
    kept = (
        f"the last complete checkpoint, {ckpt}, is intact: continue from it with --resume once "
        "this is fixed"
        if ckpt is not None
        else "no checkpoint was written yet"
    )
    return OutputError(f"{what}: {reason}; {kept}")


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete the temporary folders of checkpoint writes that were killed (e.g. by SIGKILL)."""
    for tmp in (run_dir / "checkpoints").glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(run_dir: Path, model: GPT2, state: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint folder atomically, point ``latest`` at it, prune old ones.

    If writing fails (a full disk), the partial folder is removed and ``latest`` still points at
    the previous checkpoint, intact; the error is an OutputError saying so.
    """
    checkpoints = run_dir / "checkpoints"
    name = f"step-{state['step']:07d}"
    tmp = checkpoints / f".tmp-{name}-{os.getpid()}"
    final = checkpoints / name
    try:
        checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(model, tmp)
        with open(tmp / STATE_FILE, "wb") as f:  # a Python file: a full disk raises OSError
            torch.save(state, f)
        _fsync_tree(tmp)
        if final.exists():  # left by an earlier run that got this far; `latest` is elsewhere
            shutil.rmtree(final)
        os.rename(tmp, final)
        _write_text_atomic(run_dir / RUN_POINTER, name + "\n")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, _WRITE_ERRORS):  # (an OutputError too: say what is still safe)
            raise _output_error(f"cannot write checkpoint {final}", e, run_dir) from None
        raise
    # Prune among this one and older ones only: a later step-* folder is an orphan (written by a
    # run that died before moving `latest` to it) and must not count against this checkpoint.
    done = sorted(p for p in checkpoints.glob("step-*") if p.is_dir() and p.name <= name)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    path = run_checkpoint(run_dir)
    return path if path is not None and (path / STATE_FILE).is_file() else None


def load_training_state(ckpt: Path) -> dict[str, Any]:
    """The optimizer, step, RNG and settings saved with a checkpoint (its ``training_state.pt``)."""
    path = ckpt / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds for a truncated or foreign file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read the training state {path}: {reason}") from None
    needed = ("step", "elapsed_s", "optimizer", "data_rng", "torch_rng", "scaler", "train_config")
    if not isinstance(state, dict) or any(key not in state for key in needed):
        raise CheckpointError(f"{path} is not a gpt2lab training state")
    return state


# --- the run ----------------------------------------------------------------------------------
@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> Distributed:
        """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; then join the process group."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"device must be auto, cpu, cuda or cuda:N, not {cfg.device!r}") from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise UsageError(f"device {cfg.device}: no such CUDA device here (use --device cpu)")
    return device


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision where it pays: bfloat16 (or float16) on GPUs, float32 on CPU by default."""
    if cfg.dtype == "float32" or (cfg.dtype == "auto" and device.type != "cuda"):
        return None
    if cfg.dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]


def _data_tokenizer(meta: dict) -> Tokenizer:
    name = meta.get("tokenizer", "gpt2")
    return get_tokenizer() if name == "gpt2" else Tokenizer.from_folder(name)


def _initial_model(cfg: TrainConfig, data: TokenData) -> GPT2:
    tokenizer = _data_tokenizer(data.meta)
    if cfg.init == "scratch":
        config = GPT2Config(
            vocab_size=data.meta["vocab_size"],
            n_positions=cfg.block_size,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            dropout=cfg.dropout,
        )
        model = GPT2(config, tokenizer)
        model.init_weights(seed=cfg.seed)
        return model
    pretrained = load(cfg.init)
    if pretrained.config.vocab_size != data.meta["vocab_size"]:
        raise UsageError(
            f"--init {cfg.init} has a vocabulary of {pretrained.config.vocab_size}, the data was "
            f"tokenized with {data.meta['vocab_size']}; prepare the data with its tokenizer"
        )
    if cfg.block_size > pretrained.config.n_positions:
        raise UsageError(
            f"block_size {cfg.block_size} exceeds the model's context "
            f"{pretrained.config.n_positions}"
        )
    config = pretrained.config.replace(dropout=cfg.dropout)
    return build_model(config, pretrained.state_dict(), pretrained.tokenizer)


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


def _read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run (or, with ``resume``, continue) training; return the final checkpoint folder."""
    cfg.validate()
    run_dir = Path(cfg.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out-dir {run_dir} is a file; pass a folder for the run")
    device = _resolve_device(cfg)
    ddp = Distributed.from_env(device.type)
    if ddp.world > 1 and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    data = open_data(cfg.data, run_dir, prepare_here=ddp.is_main)
    if ddp.world > 1:  # the first process tokenizes a bundled text; the others wait for it
        dist.barrier()
        data = open_data(cfg.data, run_dir, prepare_here=False)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        raise UsageError(f"nothing to resume: {run_dir} has no complete checkpoint")
    if ckpt is None and latest_checkpoint(run_dir) is not None:
        raise UsageError(f"{run_dir} already holds a run; pass --resume, or a new --out-dir")

    torch.manual_seed(cfg.seed + ddp.rank)  # dropout differs per process, as it would per batch
    if ckpt is not None:
        model = load(ckpt)
        if cfg.dropout != model.config.dropout:
            model = build_model(
                model.config.replace(dropout=cfg.dropout), model.state_dict(), model.tokenizer
            )
    else:
        model = _initial_model(cfg, data)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    sampler = BatchSampler(data.train, cfg.block_size, cfg.seed)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, elapsed = 0, 0.0
    if ckpt is not None:
        state = load_training_state(ckpt)
        if len(state["torch_rng"]) != ddp.world:
            raise UsageError(
                f"{ckpt} was written by {len(state['torch_rng'])} processes; resume it with "
                f"the same number (this run has {ddp.world})"
            )
        optimizer.load_state_dict(state["optimizer"])
        sampler.generator.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"][ddp.rank])
        scaler.load_state_dict(state["scaler"])
        step, elapsed = state["step"], state["elapsed_s"]
    net = model
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def autocast():
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    tokens_per_step = cfg.batch_size * cfg.grad_accum * ddp.world * cfg.block_size
    log_path = run_dir / "loss.csv"
    rows = _read_log(log_path, step) if ddp.is_main else []
    if ddp.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
        remove_partial_checkpoints(run_dir)
        n_params = model.num_parameters()
        tqdm.write(
            f"training {n_params / 1e6:.1f}M parameters on {device} x{ddp.world}, "
            f"{tokens_per_step:,} tokens/step, steps {step}->{cfg.max_steps}"
        )

    def evaluate_and_sample() -> tuple[float, str]:
        """Held-out loss and a sample from the prompt: the progress the log shows."""
        val = evaluate(
            model, data.val, cfg.block_size, cfg.batch_size, cfg.eval_batches, device, autocast()
        )
        n_sample = min(cfg.sample_tokens, model.config.n_positions // 2)
        sample = model.generate_text(
            cfg.sample_prompt, n_sample, top_k=40, seed=cfg.seed, truncate="left"
        )
        return val, f"  {cfg.sample_prompt}{sample}"

    def checkpoint() -> Path | None:
        rng = [torch.get_rng_state()]
        if ddp.world > 1:  # a collective: every process takes part, the first one writes
            rng = [None] * ddp.world
            dist.all_gather_object(rng, torch.get_rng_state())
        if not ddp.is_main:
            return None
        return save_checkpoint(
            run_dir,
            model,
            {
                "step": step,
                "elapsed_s": elapsed,
                "optimizer": optimizer.state_dict(),
                "data_rng": sampler.generator.get_state(),
                "torch_rng": rng,
                "scaler": scaler.state_dict(),
                "train_config": asdict(cfg),
            },
            cfg.keep_checkpoints,
        )

    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        desc="train",
        unit="step",
        disable=not (progress and ddp.is_main),
        dynamic_ncols=True,
    )
    last_saved = None
    with _StopRequested() as stop, _closing(bar):
        if step == 0 and ddp.is_main:  # the starting point, so a fine-tune shows what it changed
            val, sample = evaluate_and_sample()
            tqdm.write(f"step 0: val {val:.4f}\n{sample}")
        while step < cfg.max_steps:
            started = time.perf_counter()
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            offsets = sampler.global_batch(cfg.batch_size * cfg.grad_accum * ddp.world)
            mine = offsets.view(ddp.world, cfg.grad_accum, cfg.batch_size)[ddp.rank]
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x, y = sampler.windows(mine[micro], device)
                sync = micro == cfg.grad_accum - 1 or ddp.world == 1
                with nullcontext() if sync else net.no_sync(), autocast():
                    loss = language_model_loss(net, x, y) / cfg.grad_accum
                scaler.scale(loss).backward()
                loss_sum += loss.detach()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ddp.world > 1:
                dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
            step += 1
            elapsed += time.perf_counter() - started
            train_loss = loss_sum.item()
            if not math.isfinite(train_loss):
                raise UsageError(f"the loss became {train_loss} at step {step}; lower --lr")
            row = {
                "step": step,
                "tokens": step * tokens_per_step,
                "lr": f"{lr:.6g}",
                "train_loss": f"{train_loss:.6f}",
                "val_loss": "",
                "elapsed_s": f"{elapsed:.2f}",
            }
            at_eval = step % cfg.eval_interval == 0 or step == cfg.max_steps
            if at_eval and ddp.is_main:
                val, sample = evaluate_and_sample()
                row["val_loss"] = f"{val:.6f}"
                tqdm.write(f"step {step}: train {train_loss:.4f}, val {val:.4f}\n{sample}")
            if ddp.is_main:
                rows.append(row)
                bar.set_postfix(
                    loss=f"{train_loss:.3f}",
                    tok_s=f"{tokens_per_step * step / max(elapsed, 1e-9):,.0f}",
                )
                bar.update(1)
            save_now = step % cfg.checkpoint_interval == 0 or step == cfg.max_steps
            if stop.requested or save_now:
                if ddp.is_main:
                    try:
                        _write_log(log_path, rows)
                        _plot(log_path)
                    except OSError as e:
                        raise _output_error(f"cannot write {log_path}", e, run_dir) from None
                last_saved = checkpoint()
            if stop.requested:
                bar.close()
                if ddp.is_main:
                    print(
                        f"stopped at step {step}; checkpoint saved. Continue with --resume",
                        file=sys.stderr,
                    )
                break
    bar.close()
    if ddp.world > 1:
        dist.barrier()
    return last_saved or latest_checkpoint(run_dir) or run_dir


def _plot(log_path: Path) -> None:
    from ..viz.plots import loss_curve, save

    save(loss_curve(log_path), log_path.with_suffix(".png"))
