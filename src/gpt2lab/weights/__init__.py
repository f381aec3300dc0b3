"""Model files -> a ready GPT2: Hugging Face folders and Hub ids, OpenAI's TensorFlow checkpoints.

``load`` finds out what a name or path is, reads its config and tensors with the reader for that
format, checks every tensor's name and shape, and builds the model without a random init.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch

from ..config import GPT2Config
from ..errors import CheckpointError, ModelNotFoundError
from ..model import GPT2
from ..tokenizer import Tokenizer, get_tokenizer
from .hf import (
    GPT2_HUB_IDS,
    download,
    in_hub_cache,
    is_hf_folder,
    is_hub_id,
    load_hf_folder,
    save_hf_folder,
)
from .openai_tf import is_tf_checkpoint, load_tf_checkpoint

BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "models"  # gpt2lab.load("tiny")
RUN_POINTER = "latest"  # a training run folder names its newest checkpoint in this file

# Buffers some GPT-2 files carry that are not weights (the causal mask) and the tied output layer.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_TIED = "lm_head.weight"


def _check_sizes(state: dict[str, torch.Tensor], config: GPT2Config) -> None:
    """Check the config's sizes against the file's embeddings and block count before building
    even a meta model from it. A config.json could otherwise say ``n_layer: 1000000000`` (all
    memory goes to Python objects) or ``n_embd: 2**62`` (torch's size arithmetic overflows).
    Once these agree with real tensors, every size is bounded by the file's."""
    for name, shape in (
        ("transformer.wte.weight", [config.vocab_size, config.n_embd]),
        ("transformer.wpe.weight", [config.n_positions, config.n_embd]),
    ):
        if name in state and list(state[name].shape) != shape:
            raise CheckpointError(
                f"tensor {name} has shape {list(state[name].shape)}, the config needs {shape}"
            )
    # Fewer blocks than the file holds is cheap to build; the full check reports it.
    blocks = {n.split(".")[2] for n in state if n.startswith("transformer.h.") and n.count(".") > 2}
    if config.n_layer > len(blocks):
        raise CheckpointError(
            f"the weights do not fit a GPT-2 with this config: missing blocks {len(blocks)} to "
            f"{config.n_layer - 1} (the config says n_layer={config.n_layer}, the weights hold "
            f"{len(blocks)} blocks)"
        )


def normalize_state_dict(
    state: dict[str, torch.Tensor], config: GPT2Config
) -> dict[str, torch.Tensor]:
    """Bring a GPT-2 state dict to gpt2lab's names (= HF GPT2LMHeadModel's) and check it.

    Accepts keys with or without the ``transformer.`` prefix; drops mask buffers; checks the
    output layer is tied to the token embedding (GPT-2 always ties them).
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"the weights are not a mapping of name -> tensor ({name!r})")
        if name.endswith(_IGNORED_SUFFIXES) or name == _TIED:
            continue
        key = name if name.startswith("transformer.") else f"transformer.{name}"
        out[key] = tensor
    _check_sizes(out, config)
    try:
        with torch.device("meta"):  # shapes only: no memory, no random init
            expected = {name: p.shape for name, p in GPT2(config).named_parameters()}
    except (RuntimeError, ValueError, OverflowError) as e:  # sizes torch cannot even represent
        raise CheckpointError(f"the config describes a model that cannot be built: {e}") from None
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"the weights do not fit a GPT-2 with this config: {'; '.join(parts)}"
        )
    for name, shape in expected.items():
        if out[name].shape != shape:
            raise CheckpointError(
                f"tensor {name} has shape {list(out[name].shape)}, the config needs {list(shape)}"
            )
        if not out[name].is_floating_point():
            raise CheckpointError(f"tensor {name} has dtype {out[name].dtype}, expected floats")
    if _TIED in state and not torch.equal(state[_TIED], out["transformer.wte.weight"]):
        raise CheckpointError(
            "lm_head.weight differs from the token embedding; GPT-2 ties them, so this is not "
            "a GPT-2 checkpoint"
        )
    for name, tensor in out.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"tensor {name} contains NaN or infinite values")
    return out


def build_model(
    config: GPT2Config,
    state: dict[str, torch.Tensor],
    tokenizer: Tokenizer | None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> GPT2:
    """A GPT2 holding exactly these tensors (no random init, no extra copy)."""
    state = normalize_state_dict(state, config)
    with torch.device("meta"):
        model = GPT2(config, tokenizer)
    dtype = dtype or torch.float32
    state = {k: v.to(device=device or "cpu", dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def _tokenizer_for(folder: Path, config: GPT2Config) -> Tokenizer | None:
    if (folder / "vocab.json").is_file() or (folder / "encoder.json").is_file():
        return Tokenizer.from_folder(folder)
    return get_tokenizer() if config.vocab_size == 50257 else None


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder a training run's ``latest`` file points at, if there is one."""
    try:
        name = (run_dir / RUN_POINTER).read_text().strip()
    except OSError:
        return None
    return run_dir / "checkpoints" / name if name else None


def bundled_models() -> list[str]:
    """The names of the models shipped with gpt2lab (``tiny``)."""
    return sorted(p.parent.name for p in BUNDLED_MODELS.glob("*/config.json"))


def _looks_like_path(text: str) -> bool:
    """Whether a name that is no existing path was meant as one: it starts like a path, has more
    than one folder level, or has a slash yet cannot be a Hub id (``models/124M``)."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    first, slash, _ = text.partition("/")
    return bool(slash) and (Path(first).is_dir() or not is_hub_id(text))


def _unknown_name(text: str) -> ModelNotFoundError:
    """The error for a name that is no folder, no bundled model and no Hub id; it suggests the
    nearest bundled model or GPT-2 Hub id, ignoring case (``TINY``: did you mean tiny?)."""
    bundled = bundled_models()
    names = {n.lower(): n for n in [*sorted(n for n in GPT2_HUB_IDS if "/" not in n), *bundled]}
    match = difflib.get_close_matches(text.lower(), names, n=1)
    hint = (
        f"did you mean {names[match[0]]}?"
        if match
        else "pass a bundled model, a model folder or a Hub id such as gpt2 or owner/name"
    )
    return ModelNotFoundError(
        f"unknown model {text!r}: not a folder, not a bundled model ({', '.join(bundled)}) and "
        f"not a Hugging Face Hub id in the cache; {hint}"
    )


def _from_hub(text: str) -> Path:
    """``download(text)`` for a name that could as well be a missing folder (``runs/x``): its
    error says both, since offline nothing tells the two apart."""
    try:
        return download(text)
    except ModelNotFoundError as e:
        raise ModelNotFoundError(f"no such folder: {text}; as a Hub id: {e}") from None


def resolve(name_or_path: str | Path) -> Path:
    """The local folder for a model: a bundled model (``tiny``), an existing path (a training
    run folder stands for its latest checkpoint), or a Hub id fetched into the HF cache.

    Each way a name can fail has its own error: a missing path is "no such folder", a name that
    is nothing known suggests the nearest bundled model, and only a Hub id can fail on the
    network (``download``).
    """
    text = str(name_or_path)
    if text in bundled_models():
        return BUNDLED_MODELS / text
    path = Path(text).expanduser()
    if text and path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path} is a file; pass the model's folder")
        return run_checkpoint(path) or path
    if not text.strip():
        raise ModelNotFoundError("no model named: pass tiny, a model folder or a Hub id")
    if text in GPT2_HUB_IDS:
        return download(text)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        raise ModelNotFoundError(f"no such folder: {text}")
    if is_hub_id(text) or in_hub_cache(text):
        return _from_hub(text)
    raise _unknown_name(text)


def not_a_model_folder(folder: Path) -> ModelNotFoundError:
    """The error for a folder in neither format, naming the files each format needs (shared by
    ``load`` and ``verify``, so both say the same)."""
    return ModelNotFoundError(
        f"{folder} is not a model folder: expected config.json + model.safetensors "
        "(Hugging Face) or model.ckpt.index + hparams.json (OpenAI)"
    )


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    quantize: str | None = None,
) -> GPT2:
    """Load a GPT-2 with its tokenizer (``model.tokenizer``), in eval mode.

    ``name_or_path``: a Hugging Face model folder (config.json + model.safetensors or
    pytorch_model.bin), an OpenAI TensorFlow checkpoint folder (model.ckpt.* + hparams.json),
    or a Hugging Face Hub id such as ``gpt2`` or ``openai-community/gpt2-medium``.
    ``dtype``: of weights and activations (default float32). ``quantize="int8"``: round the
    weight matrices to int8 (see GPT2.quantize).
    """
    folder = resolve(name_or_path)
    if is_hf_folder(folder):
        config, state = load_hf_folder(folder)
    elif is_tf_checkpoint(folder):
        config, state = load_tf_checkpoint(folder)
    else:
        raise not_a_model_folder(folder)
    model = build_model(config, state, _tokenizer_for(folder, config), device=device, dtype=dtype)
    return model if quantize is None else model.quantize(quantize)


def save_pretrained(model: GPT2, path: str | Path) -> Path:
    """Write ``model`` as a Hugging Face folder; ``transformers`` and ``gpt2lab.load`` read it."""
    folder = Path(path)
    save_hf_folder(model.config, model.state_dict(), folder)
    if model.tokenizer is not None:
        model.tokenizer.save(folder)
    return folder
