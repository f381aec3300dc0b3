"""A sparse autoencoder (SAE): the activations at one step of the model, rewritten as a sparse sum
of learned directions ("features"), and SAE Lens's file format for it.

    x [N, d_in] ─(x - b_dec) @ W_enc + b_enc─▶ pre [N, d_sae] ─ReLU or TopK─▶ f [N, d_sae]
                ─f @ W_dec + b_dec─▶ x̂ [N, d_in]

The names and the math are SAE Lens's (``StandardSAE``, ``TopKSAE``), so a folder written by
either (``cfg.json`` + ``sae_weights.safetensors``) loads in the other and gives the same numbers.
Row ``W_dec[i]`` is feature i's direction in the step's space; training keeps it unit length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ..errors import CheckpointError, ModelNotFoundError, UsageError
from ..files import write_files
from ..hooks import describe, resolve_names
from ..tracing import run_to
from ..weights import run_checkpoint

if TYPE_CHECKING:
    from ..model import GPT2

CFG_FILE = "cfg.json"  # SAE Lens's names for the two files of an SAE folder
WEIGHTS_FILE = "sae_weights.safetensors"
SAE_LENS_VERSION = "6.0.0"  # the format version written: SAE Lens 6's cfg.json layout
BUNDLED_SAES = Path(__file__).resolve().parents[1] / "models"  # --sae tiny-sae
ACTIVATIONS = ("relu", "topk")
# Steps an SAE can read: one vector per token, [B, T, width]. Per-head steps are left out (their
# layout is the attention module's business); SAE Lens reads those flattened, as "hook_z" SAEs.
TOKEN_SHAPES = ("[B, T, C]", "[B, T, 4C]")


@dataclass(frozen=True)
class SAEConfig:
    """The shape and kind of an SAE and the step it reads (``hook_name``, TransformerLens's)."""

    d_in: int
    d_sae: int
    hook_name: str
    activation: str = "topk"  # "relu" (standard SAE, L1 trained) or "topk"
    k: int | None = None  # features kept per token (TopK only)
    model_name: str = ""

    def validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise UsageError(f"activation must be relu or topk, not {self.activation!r}")
        if self.d_in < 1 or self.d_sae < 1:
            raise UsageError(f"d_in and d_sae must be >= 1, got {self.d_in}, {self.d_sae}")
        if self.activation == "topk" and (self.k is None or not 1 <= self.k <= self.d_sae):
            raise UsageError(f"k must be in [1, d_sae = {self.d_sae}], got {self.k}")


def check_step(name: str) -> None:
    """An SAE reads a step with one vector per token ([B, T, C]); say so for any other."""
    shape = describe(name).shape
    if shape not in TOKEN_SHAPES:
        raise UsageError(
            f"{name} is {shape}: an SAE here reads one vector per token, a residual-stream or MLP "
            "step such as blocks.2.hook_resid_pre, hook_mlp_out or mlp.hook_post"
        )


def relu_activation(pre: Tensor) -> Tensor:
    """f = max(pre, 0)  [N, d_sae]: the standard SAE (its sparsity comes from an L1 penalty)."""
    return torch.relu(pre)


def topk_activation(pre: Tensor, k: int) -> Tensor:
    """f = ReLU of the k largest pre-activations of each token, 0 elsewhere [N, d_sae]
    (Gao et al. 2024; SAE Lens's TopK: choose the k largest, then ReLU them)."""
    values, indices = torch.topk(pre, k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, values.relu())


class SAE(nn.Module):
    """``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in]."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    def init_weights(self, seed: int, mean: Tensor | None = None) -> None:
        """Decoder rows random unit vectors, the encoder their transpose (a tied start; a tenth
        of it for ReLU, where about half the features start active and would otherwise add up
        to a reconstruction far too large), b_enc 0, and b_dec the mean activation (so that the
        features start by explaining the rest)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.W_dec.copy_(torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=g))
            normalize_decoder(self)
            self.W_enc.copy_(self.W_dec.T * (1.0 if self.cfg.activation == "topk" else 0.1))
            self.b_enc.zero_()
            self.b_dec.copy_(torch.zeros(self.cfg.d_in) if mean is None else mean)

    def pre_activations(self, x: Tensor) -> Tensor:
        """pre = (x - b_dec) @ W_enc + b_enc   [..., d_in] -> [..., d_sae]"""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """The feature activations f from the pre-activations (ReLU or TopK)."""
        if self.cfg.activation == "topk":
            return topk_activation(pre, int(self.cfg.k or 0))
        return relu_activation(pre)

    def encode(self, x: Tensor) -> Tensor:
        """f = activation((x - b_dec) @ W_enc + b_enc)   [..., d_in] -> [..., d_sae], >= 0."""
        return self.activate(self.pre_activations(x))

    def decode(self, f: Tensor) -> Tensor:
        """x̂ = f @ W_dec + b_dec   [..., d_sae] -> [..., d_in]"""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction x̂ = decode(encode(x)), the shape of x."""
        return self.decode(self.encode(x))

    @property
    def hook_name(self) -> str:
        return self.cfg.hook_name

    def save(self, folder: str | Path) -> Path:
        """Write SAE Lens's folder: ``cfg.json`` and ``sae_weights.safetensors``."""
        return save_sae_lens(self, folder)


def normalize_decoder(sae: SAE) -> None:
    """W_dec[i] <- W_dec[i] / ||W_dec[i]||: every feature direction unit length, so that a
    feature's size lives in its activation alone (the L1 penalty cannot shrink W_dec instead)."""
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def activations_at(model: GPT2, ids: Tensor, step: str) -> Tensor:
    """The model's value at ``step`` for token ids [B, T] -> [B, T, d]; the forward pass stops
    there (the blocks after it are not run)."""
    return run_to(model, ids, step).value


def step_width(model: GPT2, step: str) -> int:
    """The width of one token's vector at ``step`` (checked: one step of this model that an SAE
    can read)."""
    names = resolve_names(step, model.config)
    if names != [step]:
        raise UsageError(f"{step!r} must name one step, not a pattern")
    check_step(step)
    probe = torch.zeros(1, 1, dtype=torch.long, device=model.device)
    return activations_at(model, probe, step).shape[-1]


def check_model(model: GPT2, sae: SAE) -> None:
    """The SAE reads a step of this model, as wide as its d_in; else one clear error."""
    width = step_width(model, sae.hook_name)
    if width != sae.cfg.d_in:
        raise UsageError(
            f"the SAE reads {sae.hook_name} as {sae.cfg.d_in} wide; this model's is {width} "
            f"(the SAE was made for {sae.cfg.model_name or 'another model'})"
        )


# --- SAE Lens's format --------------------------------------------------------------------------
def sae_lens_cfg(cfg: SAEConfig) -> dict[str, Any]:
    """cfg.json as SAE Lens 6 writes it (``StandardSAEConfig`` / ``TopKSAEConfig.to_dict``)."""
    out: dict[str, Any] = {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAE_LENS_VERSION,
            "sae_lens_training_version": SAE_LENS_VERSION,
            "hook_name": cfg.hook_name,
            "model_name": cfg.model_name,
            "prepend_bos": False,
        },
        "architecture": "standard" if cfg.activation == "relu" else "topk",
    }
    if cfg.activation == "topk":
        out |= {"k": cfg.k, "rescale_acts_by_decoder_norm": False}
    return out


def save_sae_lens(sae: SAE, folder: str | Path) -> Path:
    """``folder``/cfg.json + sae_weights.safetensors (float32), written together."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.state_dict().items()}
    cfg = json.dumps(sae_lens_cfg(sae.cfg), indent=2) + "\n"
    write_files({folder / CFG_FILE: cfg, folder / WEIGHTS_FILE: save(tensors)}, what="the SAE")
    return folder


def _cfg_from_sae_lens(raw: dict[str, Any], where: Path) -> SAEConfig:
    """Our SAEConfig from SAE Lens's cfg.json: version 6 (``metadata.hook_name``,
    ``architecture``) or older (``hook_point``, ``activation_fn_str``), refusing what the math
    here does not do (activation normalization, rescaled TopK, hook_z reshaping)."""
    meta = raw.get("metadata") or {}
    hook_name = meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point")
    architecture = raw.get("architecture")
    fn = raw.get("activation_fn") or raw.get("activation_fn_str") or "relu"
    if architecture is None:
        architecture = "topk" if fn == "topk" else "standard"
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    normalize = raw.get("normalize_activations") or "none"
    unsupported = {
        "architecture": architecture not in ("standard", "topk"),
        "normalize_activations": normalize not in ("none", False),
        "apply_b_dec_to_input": raw.get("apply_b_dec_to_input", True) is not True,
        "rescale_acts_by_decoder_norm": bool(raw.get("rescale_acts_by_decoder_norm")),
        "reshape_activations": raw.get("reshape_activations", "none") != "none",
        "hook_head_index": raw.get("hook_head_index") is not None,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        setting = bad[0]
        value = architecture if setting == "architecture" else raw.get(setting)
        raise CheckpointError(
            f"{where}: {setting} = {value!r} is not supported (gpt2lab reads standard ReLU and "
            "TopK SAEs with apply_b_dec_to_input and no activation normalization)"
        )
    if not hook_name or "d_in" not in raw or "d_sae" not in raw:
        raise CheckpointError(f"{where} has no hook_name, d_in or d_sae: not an SAE Lens config")
    activation = "topk" if architecture == "topk" else "relu"
    return SAEConfig(
        d_in=int(raw["d_in"]),
        d_sae=int(raw["d_sae"]),
        hook_name=str(hook_name),
        activation=activation,
        k=int(k) if activation == "topk" and k is not None else None,
        model_name=str(meta.get("model_name") or raw.get("model_name") or ""),
    )


def sae_folder(name: str | Path) -> Path:
    """``--sae``: a folder with SAE Lens's files, a training run (its latest checkpoint), or a
    bundled SAE's name (``tiny-sae``)."""
    folder = Path(name)
    if not folder.exists() and (BUNDLED_SAES / str(name) / CFG_FILE).is_file():
        return BUNDLED_SAES / str(name)
    if (folder / CFG_FILE).is_file():
        return folder
    ckpt = run_checkpoint(folder)
    if ckpt is not None and (ckpt / CFG_FILE).is_file():
        return ckpt
    raise ModelNotFoundError(
        f"{name}: no SAE there (a folder with {CFG_FILE} and {WEIGHTS_FILE}, an `sae train` run, "
        "or tiny-sae)"
    )


def load_sae(name: str | Path) -> SAE:
    """An SAE from SAE Lens's folder (community SAEs for GPT-2 small, or one trained here)."""
    folder = sae_folder(name)
    try:
        raw = json.loads((folder / CFG_FILE).read_text())
        tensors = load_file(folder / WEIGHTS_FILE)
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"cannot read the SAE in {folder}: {e}") from None
    cfg = _cfg_from_sae_lens(raw, folder / CFG_FILE)
    scaling = tensors.pop("scaling_factor", None)  # old SAE Lens files: all ones, a no-op
    if scaling is not None and not torch.all(scaling == 1):
        raise CheckpointError(f"{folder}: a scaling_factor other than 1 is not supported")
    shapes = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
    }
    for key, shape in shapes.items():
        if key not in tensors or tuple(tensors[key].shape) != shape:
            found = tuple(tensors[key].shape) if key in tensors else "missing"
            raise CheckpointError(f"{folder}: {key} should be {list(shape)}, found {found}")
    sae = SAE(cfg)
    sae.load_state_dict({k: tensors[k].float() for k in shapes})
    return sae
