"""Setting up a training run: the processes and device, the data, the model to start from (new,
fine-tuned or resumed), the optimizer and the batch sampler, gathered in a ``Run``.

``setup(cfg, resume)`` makes one; ``trainer`` steps it. Resuming restores everything a checkpoint
holds (optimizer, data order, RNG, loss scaler), so the run continues exactly.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import OutputError, UsageError
from ..model import GPT2
from ..tokenizer import Tokenizer, get_tokenizer
from ..weights import build_model, load
from .checkpoints import (
    latest_checkpoint,
    load_training_state,
    read_log,
    remove_partial_checkpoints,
)
from .config import TrainConfig
from .data import TokenData, open_data


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
        """The start offsets of the next ``n`` windows (the whole global batch)."""
        return torch.randint(len(self.tokens) - self.block_size - 1, (n,), generator=self.generator)

    def windows(self, offsets: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Inputs and targets (the same windows one token later) at ``offsets``, on ``device``."""
        rows = [
            torch.from_numpy(self.tokens[o : o + self.block_size + 1].astype("int64"))
            for o in offsets.tolist()
        ]
        batch = torch.stack(rows).to(device)
        return batch[:, :-1], batch[:, 1:]


@dataclass
class Distributed:
    """This process's place in the run: its rank among ``world`` processes (1 without DDP)."""

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
    """``--device``: auto (CUDA if there is one), or one that exists here."""
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
    """The tokenizer the data was prepared with (its ``meta.json`` names it)."""
    name = meta.get("tokenizer", "gpt2")
    return get_tokenizer() if name == "gpt2" else Tokenizer.from_folder(name)


def _initial_model(cfg: TrainConfig, data: TokenData) -> GPT2:
    """A new run's model: from scratch (seeded), or ``--init`` a pretrained one to fine-tune."""
    tokenizer = _data_tokenizer(data.meta)
    if cfg.init == "scratch":
        model = GPT2(cfg.model_config(data.meta["vocab_size"]), tokenizer)
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


@dataclass
class Run:
    """What a run holds between steps: its parts, where it is (``step``, ``elapsed`` seconds of
    training) and the rows of its loss log (first process only)."""

    cfg: TrainConfig
    run_dir: Path
    ddp: Distributed
    device: torch.device
    data: TokenData
    model: GPT2
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.AdamW
    sampler: BatchSampler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    step: int = 0
    elapsed: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_step(self) -> int:
        cfg = self.cfg
        return cfg.batch_size * cfg.grad_accum * self.ddp.world * cfg.block_size

    @property
    def log_path(self) -> Path:
        return self.run_dir / "loss.csv"

    def autocast(self) -> AbstractContextManager:
        """Mixed precision for a forward pass, where the run uses it."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _open_run(cfg: TrainConfig) -> tuple[Path, torch.device, Distributed, TokenData]:
    """The run folder, the device, the processes and the data, each checked."""
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
    return run_dir, device, ddp, data


def _checkpoint_to_resume(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint ``--resume`` continues from; None for a new run, which needs a new folder."""
    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        raise UsageError(f"nothing to resume: {run_dir} has no complete checkpoint")
    if ckpt is None and latest_checkpoint(run_dir) is not None:
        raise UsageError(f"{run_dir} already holds a run; pass --resume, or a new --out-dir")
    return ckpt


def _resumed_model(cfg: TrainConfig, ckpt: Path) -> GPT2:
    """The checkpoint's model, with this run's dropout."""
    model = load(ckpt)
    if cfg.dropout != model.config.dropout:
        config = model.config.replace(dropout=cfg.dropout)
        model = build_model(config, model.state_dict(), model.tokenizer)
    return model


def _restore(run: Run, ckpt: Path) -> None:
    """Continue exactly where the checkpoint's run was: optimizer, data order, RNG, scaler."""
    state = load_training_state(ckpt)
    if len(state["torch_rng"]) != run.ddp.world:
        raise UsageError(
            f"{ckpt} was written by {len(state['torch_rng'])} processes; resume it with "
            f"the same number (this run has {run.ddp.world})"
        )
    run.optimizer.load_state_dict(state["optimizer"])
    run.sampler.generator.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"][run.ddp.rank])
    run.scaler.load_state_dict(state["scaler"])
    run.step, run.elapsed = state["step"], state["elapsed_s"]


def _prepare_folder(run: Run) -> None:
    """First process: the log so far, the run folder without killed writes, a header line."""
    run.rows = read_log(run.log_path, run.step)
    try:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the run folder {run.run_dir}: {e.strerror}") from None
    remove_partial_checkpoints(run.run_dir)
    tqdm.write(
        f"training {run.model.num_parameters() / 1e6:.1f}M parameters on {run.device} "
        f"x{run.ddp.world}, {run.tokens_per_step:,} tokens/step, "
        f"steps {run.step}->{run.cfg.max_steps}"
    )


def setup(cfg: TrainConfig, resume: bool) -> Run:
    """Everything a run needs, new or (``resume``) continued from its latest checkpoint."""
    run_dir, device, ddp, data = _open_run(cfg)
    ckpt = _checkpoint_to_resume(run_dir, resume)
    torch.manual_seed(cfg.seed + ddp.rank)  # dropout differs per process, as it would per batch
    model = _resumed_model(cfg, ckpt) if ckpt is not None else _initial_model(cfg, data)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    sampler = BatchSampler(data.train, cfg.block_size, cfg.seed)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    run = Run(cfg, run_dir, ddp, device, data, model, model, optimizer, sampler, scaler, amp_dtype)
    if ckpt is not None:
        _restore(run, ckpt)
    if ddp.world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if ddp.is_main:
        _prepare_folder(run)
    return run
