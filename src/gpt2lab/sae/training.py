"""Training an SAE on one step's activations, streamed from a ``prepare`` folder, and measuring it.

    random windows of tokens ─model, up to the step─▶ x [N, d_in] ─SAE─▶ x̂
    loss = ||x - x̂||² / E||x - x̄||²                     (normalized reconstruction error)
         + l1_coefficient · Σ_i f_i ||W_dec[i]|| / E||x - x̄||^½   (ReLU: the L1 penalty)
         + aux_coefficient · AuxK                            (dead features learn the rest)
    ─backward─▶ drop the W_dec gradient along each row ─Adam─▶ W_dec rows back to unit length

The recipe is the field's (Anthropic's "Towards Monosemanticity" and April 2024 update; Gao et
al. 2024 for TopK and AuxK): unit-norm decoder rows, an L1 penalty scaled by the decoder norm (or
TopK sparsity), and an auxiliary loss that gives dead features gradient (a feature is dead when
it has not fired for ``dead_after_tokens`` tokens). Both terms of the loss are divided by the
spread of the activations, so one ``l1_coefficient`` suits any step and any model.

A run folder is laid out as the model trainer's (``train.checkpoints``): ``checkpoints/step-N/``
(SAE Lens's files + ``training_state.pt``), ``latest``, ``loss.csv``; ``resume`` continues exactly.
``evaluate_sae`` gives the numbers an SAE is judged by: variance explained, L0, dead features,
and the model's loss with the SAE spliced in against the clean loss and the step zero-ablated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import OutputError, UsageError
from ..hooks import Hooks
from ..model import GPT2, inference
from ..train.checkpoints import (
    latest_checkpoint,
    load_training_state,
    output_error,
    read_log,
    remove_partial_checkpoints,
    save_checkpoint,
    write_log,
)
from ..train.data import TokenData
from ..train.run import BatchSampler
from ..weights import load
from .autoencoder import (
    SAE,
    SAEConfig,
    activations_at,
    check_step,
    load_sae,
    normalize_decoder,
    step_width,
)

LOG_FIELDS = (
    "step",
    "tokens",
    "mse",
    "l0",
    "dead",
    "variance_explained",
    "clean_loss",
    "spliced_loss",
    "zero_loss",
    "elapsed_s",
)


@dataclass
class SAETrainConfig:
    """Every setting of an SAE run; CLI flags use these names (``--d-sae``)."""

    data: str = field(default="", metadata={"help": "folder written by `gpt2lab prepare`"})
    step: str = field(
        default="blocks.2.hook_resid_pre",
        metadata={"help": "the model step whose activations the SAE rewrites"},
    )
    model: str = "tiny"
    out_dir: str = "sae-run"
    d_sae: int = field(default=0, metadata={"help": "features (default: 8 x the step's width)"})
    activation: str = field(default="topk", metadata={"help": "topk (default) or relu (L1)"})
    k: int = field(default=32, metadata={"help": "features kept per token (topk)"})
    l1_coefficient: float = field(default=0.05, metadata={"help": "sparsity penalty (relu)"})
    aux_coefficient: float = field(default=1 / 32, metadata={"help": "weight of the AuxK loss"})
    dead_after_tokens: int = field(
        default=100_000, metadata={"help": "a feature silent this many tokens is dead"}
    )
    context: int = 128  # tokens per window
    batch_size: int = 32  # windows per step
    max_steps: int = 2000
    lr: float = 1e-3
    seed: int = 0
    eval_interval: int = 200
    eval_batches: int = 8
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2

    def validate(self) -> None:
        positive: tuple[str, ...] = ("k", "context", "batch_size", "max_steps", "eval_interval")
        positive += ("eval_batches", "checkpoint_interval", "keep_checkpoints", "dead_after_tokens")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be >= 1, got {value}")
        for name in ("l1_coefficient", "aux_coefficient", "d_sae"):
            if not 0 <= getattr(self, name) < math.inf:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if self.activation not in ("topk", "relu"):
            raise UsageError(f"activation must be topk or relu, not {self.activation!r}")
        if not self.data:
            raise UsageError("no data: pass --data DIR (made by `gpt2lab prepare`)")
        check_step(self.step)  # a known step with one vector per token (the layer: once loaded)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAETrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"unknown SAE training settings: {', '.join(unknown)}")
        return cls(**values)


# --- the loss ---------------------------------------------------------------------------------
def reconstruction_error(x: Tensor, x_hat: Tensor, spread: float) -> Tensor:
    """Σ_d (x - x̂)² averaged over tokens, over ``spread`` = E||x - x̄||²: 0 is perfect, 1 is no
    better than the mean activation (so 1 - this is the variance explained)."""
    return (x - x_hat).pow(2).sum(-1).mean() / spread


def l1_penalty(f: Tensor, sae: SAE, spread: float) -> Tensor:
    """Σ_i f_i ||W_dec[i]|| averaged over tokens, over sqrt(spread): the L1 norm of the features
    as they appear in x (a feature cannot dodge it by shrinking f and growing W_dec[i])."""
    return (f * sae.W_dec.norm(dim=-1)).sum(-1).mean() / math.sqrt(spread)


def auxk_loss(sae: SAE, x: Tensor, x_hat: Tensor, pre: Tensor, dead: Tensor, k_aux: int) -> Tensor:
    """AuxK (Gao et al. 2024): the ``k_aux`` largest pre-activations among the dead features
    reconstruct what the live ones missed, e = x - x̂; loss ||e - ê||² / ||e||² (0 if none dead).
    pre [N, d_sae], dead [d_sae] bool."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return x.new_zeros(())
    error = (x - x_hat).detach()
    masked = pre.masked_fill(~dead, -math.inf)
    values, indices = torch.topk(masked, min(k_aux, n_dead), dim=-1)
    f_aux = torch.zeros_like(pre).scatter_(-1, indices, values.relu())
    error_hat = f_aux @ sae.W_dec
    return (error - error_hat).pow(2).sum(-1).mean() / error.pow(2).sum(-1).mean().clamp_min(1e-12)


def remove_parallel_gradient(sae: SAE) -> None:
    """Drop the part of each W_dec row's gradient that points along the row: the step then
    turns the direction instead of lengthening it (the norm is reset to 1 after anyway)."""
    if sae.W_dec.grad is None:
        return
    w = sae.W_dec.detach()
    along = (sae.W_dec.grad * w).sum(-1, keepdim=True)
    sae.W_dec.grad -= along * w


# --- measuring --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SAEMetrics:
    """How good an SAE is, on ``tokens`` held-out tokens.

    ``variance_explained`` 1 - Σ||x - x̂||² / Σ||x - x̄||²; ``l0`` features firing per token;
    ``dead`` features that fired on none of these tokens; the model's mean next-token loss
    (nats) ``clean``, with the step replaced by the SAE's reconstruction (``spliced``) and by
    zeros (``zero_ablated``); ``loss_recovered`` (zero - spliced) / (zero - clean): 1 is the
    clean model, 0 no better than ablating the step."""

    tokens: int
    variance_explained: float
    l0: float
    dead: int
    d_sae: int
    clean: float
    spliced: float
    zero_ablated: float

    @property
    def loss_recovered(self) -> float:
        span = self.zero_ablated - self.clean
        return (self.zero_ablated - self.spliced) / span if span else float("nan")

    def summary(self) -> str:
        return (
            f"variance explained {self.variance_explained:.3f}, L0 {self.l0:.1f}, dead "
            f"{self.dead}/{self.d_sae}; loss clean {self.clean:.4f}, spliced {self.spliced:.4f}, "
            f"zero-ablated {self.zero_ablated:.4f} ({self.loss_recovered:.1%} recovered) "
            f"on {self.tokens:,} tokens"
        )


def splice(sae: SAE) -> Hooks:
    """Hooks that replace the SAE's step with its reconstruction x̂ = SAE(x)."""
    return Hooks({sae.hook_name: lambda x, _name: sae(x).to(x.dtype)})


def eval_windows(tokens, context: int, batch_size: int, max_batches: int) -> list[Tensor]:
    """Consecutive windows of ``context + 1`` held-out tokens, in batches [B, context + 1]."""
    n = min((len(tokens) - 1) // context, max_batches * batch_size)
    if n < 1:
        raise UsageError(f"{len(tokens)} held-out tokens are fewer than one window of {context}")
    starts = (torch.arange(n) * context).split(batch_size)
    return [
        torch.stack([torch.from_numpy(tokens[s : s + context + 1].astype("int64")) for s in chunk])
        for chunk in (c.tolist() for c in starts)
    ]


@torch.no_grad()
def evaluate_sae(
    model: GPT2, sae: SAE, tokens, *, context: int = 128, batch_size: int = 16, max_batches: int = 8
) -> SAEMetrics:
    """The ``SAEMetrics`` of ``sae`` on consecutive windows of ``tokens`` (a held-out split)."""
    step = sae.hook_name
    sq_err = sq_dev = l0 = 0.0
    count = 0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    losses = {"clean": 0.0, "spliced": 0.0, "zero_ablated": 0.0}
    total = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    batches = eval_windows(tokens, context, batch_size, max_batches)
    xs = []
    with inference(model):
        for batch in batches:
            batch = batch.to(model.device)
            x = activations_at(model, batch[:, :-1], step).reshape(-1, sae.cfg.d_in).float()
            xs.append(x.cpu())
            total += x.double().sum(0).cpu()
            f = sae.encode(x)
            sq_err += float((x - sae.decode(f)).pow(2).sum())
            l0 += float((f > 0).sum())
            fired |= (f > 0).any(0).cpu()
            count += x.shape[0]
            n = x.shape[0]
            args = (batch[:, :-1], batch[:, 1:])
            losses["clean"] += float(model(*args, hooks=Hooks())) * n
            losses["spliced"] += float(model(*args, hooks=splice(sae))) * n
            zero = Hooks({step: lambda v, _n: torch.zeros_like(v)})
            losses["zero_ablated"] += float(model(*args, hooks=zero)) * n
    mean = (total / count).float()
    sq_dev = sum(float((x - mean).pow(2).sum()) for x in xs)
    return SAEMetrics(
        tokens=count,
        variance_explained=1 - sq_err / sq_dev,
        l0=l0 / count,
        dead=int((~fired).sum()),
        d_sae=sae.cfg.d_sae,
        **{k: v / count for k, v in losses.items()},
    )


# --- a run ------------------------------------------------------------------------------------
@dataclass
class SAERun:
    """What a run holds between steps: the frozen model, the SAE, Adam, the batch sampler, how
    many tokens ago each feature last fired, and the activations' spread (fixed at the start)."""

    cfg: SAETrainConfig
    run_dir: Path
    model: GPT2
    sae: SAE
    data: TokenData
    optimizer: torch.optim.Adam
    sampler: BatchSampler
    since_fired: Tensor  # [d_sae] tokens since each feature last fired
    spread: float = 1.0
    step: int = 0
    elapsed: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.context


def _open_model_and_data(cfg: SAETrainConfig) -> tuple[GPT2, TokenData, int]:
    """The model (frozen), the data and the step's width, each checked."""
    data = TokenData.open(cfg.data)
    model = load(cfg.model)
    model.requires_grad_(False).eval()
    if data.meta.get("vocab_size") != model.config.vocab_size:
        raise UsageError(
            f"--data {cfg.data} was tokenized for a vocabulary of {data.meta.get('vocab_size')}, "
            f"the model has {model.config.vocab_size}"
        )
    if cfg.context > model.config.n_positions:
        raise UsageError(f"context {cfg.context} exceeds the model's {model.config.n_positions}")
    return model, data, step_width(model, cfg.step)


def next_activations(run: SAERun) -> Tensor:
    """The step's activations for the next batch of random windows [batch · context, d_in]."""
    offsets = run.sampler.global_batch(run.cfg.batch_size)
    x, _ = run.sampler.windows(offsets, run.model.device)
    return activations_at(run.model, x, run.cfg.step).reshape(-1, run.sae.cfg.d_in).float()


def setup_sae_run(cfg: SAETrainConfig, resume: bool = False) -> SAERun:
    """A new run (SAE initialized from a first batch) or, with ``resume``, the latest
    checkpoint's run restored exactly: weights, Adam, data order, dead-feature counters."""
    cfg.validate()
    run_dir = Path(cfg.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out-dir {run_dir} is a file; pass a folder for the run")
    ckpt = latest_checkpoint(run_dir)
    if resume and ckpt is None:
        raise UsageError(f"nothing to resume: {run_dir} has no complete checkpoint")
    if not resume and ckpt is not None:
        raise UsageError(f"{run_dir} already holds an SAE run; pass --resume, or a new --out-dir")
    model, data, d_in = _open_model_and_data(cfg)
    sampler = BatchSampler(data.train, cfg.context, cfg.seed)
    if ckpt is not None:
        sae = load_sae(ckpt)
    else:
        sae_cfg = SAEConfig(
            d_in=d_in,
            d_sae=cfg.d_sae or 8 * d_in,
            hook_name=cfg.step,
            activation=cfg.activation,
            k=cfg.k if cfg.activation == "topk" else None,
            model_name=cfg.model,
        )
        sae = SAE(sae_cfg)
    sae.to(model.device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    since = torch.zeros(sae.cfg.d_sae, device=model.device)
    run = SAERun(cfg, run_dir, model, sae, data, optimizer, sampler, since)
    if ckpt is not None:
        state = load_training_state(ckpt)
        optimizer.load_state_dict(state["optimizer"])
        sampler.generator.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"][0])
        run.since_fired = state["since_fired"].to(model.device)
        run.spread, run.step, run.elapsed = state["spread"], state["step"], state["elapsed_s"]
    else:
        # The start: b_dec at the mean activation, the spread of the activations around it.
        # This batch is drawn from its own generator, so the training batches do not move.
        first = BatchSampler(data.train, cfg.context, cfg.seed + 1)
        x, _ = first.windows(first.global_batch(cfg.batch_size), model.device)
        acts = activations_at(model, x, cfg.step).reshape(-1, d_in).float()
        sae.init_weights(cfg.seed, mean=acts.mean(0).cpu())
        sae.to(model.device)
        run.spread = float((acts - acts.mean(0)).pow(2).sum(-1).mean())
    run.rows = read_log(run_dir / "loss.csv", run.step)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
    remove_partial_checkpoints(run_dir)
    return run


def sae_train_step(run: SAERun) -> dict[str, float]:
    """One Adam step on a fresh batch of activations; returns its mse, L0 and dead count."""
    cfg, sae = run.cfg, run.sae
    started = time.perf_counter()
    x = next_activations(run)
    pre = sae.pre_activations(x)
    f = sae.activate(pre)
    x_hat = sae.decode(f)
    mse = reconstruction_error(x, x_hat, run.spread)
    loss = mse
    if cfg.activation == "relu":
        loss = loss + cfg.l1_coefficient * l1_penalty(f, sae, run.spread)
    fired = (f > 0).any(0)
    run.since_fired = torch.where(fired, 0.0, run.since_fired + x.shape[0])
    dead = run.since_fired >= cfg.dead_after_tokens
    if cfg.aux_coefficient > 0:
        k_aux = sae.cfg.d_in // 2
        loss = loss + cfg.aux_coefficient * auxk_loss(sae, x, x_hat, pre, dead, k_aux)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    remove_parallel_gradient(sae)
    run.optimizer.step()
    normalize_decoder(sae)
    run.step += 1
    run.elapsed += time.perf_counter() - started
    value = float(mse.detach())
    if not math.isfinite(value):
        raise UsageError(f"the loss became {value} at step {run.step}; lower --lr")
    return {"mse": value, "l0": float((f > 0).sum(-1).float().mean()), "dead": int(dead.sum())}


def save_sae_run(run: SAERun) -> Path:
    """The loss log, then a checkpoint: SAE Lens's files + what resuming needs."""
    try:
        write_log(run.run_dir / "loss.csv", run.rows, LOG_FIELDS)
    except OSError as e:
        raise output_error(f"cannot write {run.run_dir / 'loss.csv'}", e, run.run_dir) from None
    state = {
        "step": run.step,
        "elapsed_s": run.elapsed,
        "optimizer": run.optimizer.state_dict(),
        "data_rng": run.sampler.generator.get_state(),
        "torch_rng": [torch.get_rng_state()],
        "scaler": {},  # (the model trainer's loss scaler; an SAE trains in float32)
        "train_config": dataclasses.asdict(run.cfg),
        "since_fired": run.since_fired.cpu(),
        "spread": run.spread,
    }
    return save_checkpoint(run.run_dir, run.sae, state, run.cfg.keep_checkpoints)


def train_sae(
    cfg: SAETrainConfig, *, resume: bool = False, progress: bool = True
) -> tuple[Path, SAEMetrics | None]:
    """Train (or continue) an SAE; return the final checkpoint and its last measurement."""
    run = setup_sae_run(cfg, resume)
    bar = tqdm(total=cfg.max_steps, initial=run.step, desc="sae", unit="step", disable=not progress)
    metrics = None
    last = latest_checkpoint(run.run_dir) or run.run_dir
    try:
        while run.step < cfg.max_steps:
            stats = sae_train_step(run)
            row: dict[str, Any] = {
                "step": run.step,
                "tokens": run.step * run.tokens_per_step,
                "mse": f"{stats['mse']:.6f}",
                "l0": f"{stats['l0']:.2f}",
                "dead": stats["dead"],
                "elapsed_s": f"{run.elapsed:.2f}",
            }
            if run.step % cfg.eval_interval == 0 or run.step == cfg.max_steps:
                metrics = evaluate_sae(
                    run.model, run.sae, run.data.val, context=cfg.context,
                    batch_size=cfg.batch_size, max_batches=cfg.eval_batches,
                )  # fmt: skip
                row |= {
                    "variance_explained": f"{metrics.variance_explained:.5f}",
                    "clean_loss": f"{metrics.clean:.5f}",
                    "spliced_loss": f"{metrics.spliced:.5f}",
                    "zero_loss": f"{metrics.zero_ablated:.5f}",
                }
                tqdm.write(f"step {run.step}: {metrics.summary()}")
            run.rows.append(row)
            bar.set_postfix(mse=f"{stats['mse']:.3f}", l0=f"{stats['l0']:.1f}", dead=stats["dead"])
            bar.update(1)
            if run.step % cfg.checkpoint_interval == 0 or run.step == cfg.max_steps:
                last = save_sae_run(run)
    finally:
        bar.close()
    return last, metrics
