"""Hugging Face folders: config.json + model.safetensors (or pytorch_model.bin), and the Hub.

Files are read without running code: safetensors holds raw tensors, and pickled
``pytorch_model.bin`` files are opened with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import socket
import zipfile
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import GPT2Config
from ..errors import CheckpointError, ModelNotFoundError, OutputError
from ..quantize import dequantize_matrix, output_axis, quantize_matrix
from .families import to_hf

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
_GPT2_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


# config.json keys whose JSON type GPT2Config.from_hf_dict relies on. Checked first so that a
# list or a string where a number belongs is one clear CheckpointError, not a TypeError from deep
# inside (an unhashable value in a set test, a bool taken for an int by a torch factory...).
_CONFIG_INTS = ("vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head")
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "model_type": (str,),
    "activation_function": (str,),
    "n_inner": (int, type(None)),
    "layer_norm_epsilon": (int, float),
    "scale_attn_weights": (bool,),
    "scale_attn_by_inverse_layer_idx": (bool,),
    "reorder_and_upcast_attn": (bool,),
    "add_cross_attention": (bool,),
    "tie_word_embeddings": (bool,),
}


def read_json(path: Path, what: str = "file") -> object:
    """A JSON file's value; every way it can fail (missing, not UTF-8, invalid, nested thousands
    of levels deep: RecursionError) is one CheckpointError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise CheckpointError(f"{what} {path} is not valid JSON: {reason}") from None


def read_config(path: Path) -> GPT2Config:
    """A Hugging Face config.json as a GPT2Config, refusing values of the wrong JSON type."""
    d = read_json(path, "config")
    if not isinstance(d, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    for key in _CONFIG_INTS:
        value = d.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python
            raise CheckpointError(f"{path}: {key} must be an integer, got {value!r}")
    for key, types in _CONFIG_TYPES.items():
        value = d.get(key)
        wrong_bool = isinstance(value, bool) and bool not in types
        if key in d and (wrong_bool or not isinstance(value, types)):
            raise CheckpointError(f"{path}: {key} has the wrong type: {value!r}")
    eps = d.get("layer_norm_epsilon", 1e-5)
    if not 0.0 < eps < float("inf"):  # also refuses NaN and Infinity, which Python's json accepts
        raise CheckpointError(f"{path}: layer_norm_epsilon must be a positive number, got {eps!r}")
    try:
        return GPT2Config.from_hf_dict(d)
    except CheckpointError:
        raise
    except (TypeError, ValueError, OverflowError) as e:  # a safety net behind the checks above
        raise CheckpointError(f"{path}: {e}") from None


def read_weight_file(path: Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of one weight file. ``mmap``: leave a zip pickle's tensors memory-mapped.

    Only for a caller that is done with them before returning (verify hashes them one by one):
    a model built on mapped tensors dies with SIGBUS, no traceback, as soon as the file is
    overwritten or truncated under it (a new download, `gpt2lab convert` into the same folder).
    """
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # Memory-mapping needs the zip format (PyTorch >= 1.6); older files are read whole.
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read weights from {path}: {reason}") from None
    except Exception as e:  # torch.load's unpickler raises many kinds for a foreign or bad file
        raise CheckpointError(
            f"{path} is not a plain tensor checkpoint ({type(e).__name__}); it may be corrupted "
            "or hold code, which gpt2lab refuses to run"
        ) from None


def shard_names(index_path: Path) -> list[str]:
    """The weight files a ``*.index.json`` names in its ``weight_map``.

    Only plain file names are accepted: a shard must sit beside its index, never elsewhere on
    the disk (``../../secret``) where an index from the internet could point.
    """
    index = read_json(index_path, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"shard index {index_path} has no weight_map of tensor -> file")
    names = set()
    for file in weight_map.values():
        if not isinstance(file, str) or not file or Path(file).name != file or file in ("..", "."):
            raise CheckpointError(f"shard index {index_path} names a bad shard file: {file!r}")
        names.add(file)
    return sorted(names)


def read_hf_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's weight file(s), sharded or not, as saved."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            state = read_weight_file(path)
            break
        state = {}
        for shard in shard_names(path):
            state.update(read_weight_file(folder / shard))
        break
    else:
        raise CheckpointError(f"{folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in state.items()
    ):
        raise CheckpointError(f"the weights in {folder} are not a flat mapping of name -> tensor")
    return state


def load_hf_folder(folder: Path) -> tuple[GPT2Config, dict[str, torch.Tensor]]:
    """config.json and all tensors of a Hugging Face folder; any bad file -> CheckpointError."""
    return read_config(folder / "config.json"), dequantize_state(read_hf_state_dict(folder))


# --- int8 files -------------------------------------------------------------------------------
# gpt2lab can store a model with int8 weight matrices (a quarter of float32): the matrix NAME as
# int8 and NAME.scale, one bfloat16 scale per output channel shaped to broadcast over it ([V, 1]
# for the token embedding, whose rows are the output layer's channels; [1, out] for the [in, out]
# layers). No GPT-2 parameter name ends in ".scale", so such a file is recognised by its names.
SCALE = ".scale"


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state with every weight matrix but W_P as int8 + scale (see gpt2lab.quantize)."""
    out = {}
    for name, t in state.items():
        axis = output_axis(name, t)
        if axis is None:
            out[name] = t
        else:
            out[name], out[name + SCALE] = quantize_matrix(t, axis)
    return out


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo ``quantize_state``: int8 matrices times their scales, in float32."""
    for scale_name in [name for name in state if name.endswith(SCALE)]:
        name = scale_name.removesuffix(SCALE)
        q, scale = state.get(name), state.pop(scale_name)
        ok = q is not None and q.dtype == torch.int8 and q.dim() == 2 and scale.dim() == 2
        if q is None or not ok or scale.shape not in ((q.shape[0], 1), (1, q.shape[1])):
            raise CheckpointError(f"{scale_name} does not scale an int8 matrix {name}")
        state[name] = dequantize_matrix(q, scale)
    return state


def save_hf_folder(
    config: GPT2Config, state: dict[str, torch.Tensor], folder: Path, *, int8: bool = False
) -> None:
    """config.json + model.safetensors that transformers' class for the config loads unchanged
    (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, OpenAIGPTLMHeadModel: each with its
    own tensor names, see ``families``); ``int8``: weight matrices as int8 + scales under our
    names, a file only gpt2lab reads."""
    state = quantize_state(state) if int8 else to_hf(state, config)
    tensors = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config.save_json(folder / "config.json")
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    except (OSError, SafetensorError) as e:
        raise OutputError(f"cannot write the model to {folder}: {e}") from None


# Hub ids of GPT-2 models. The Hub still serves its oldest models under ids without an owner;
# any newer id is "owner/name".
GPT2_HUB_IDS = frozenset(
    [
        *(f"{owner}{name}" for owner in ("", "openai-community/") for name in _GPT2_SIZES),
        "distilgpt2",
        "distilbert/distilgpt2",
    ]
)
# First path parts that are pages of the Hub's own site, so no owner can have these names:
# "models/124M" is a folder (OpenAI's download layout), never a Hub id.
_HUB_ROUTES = frozenset({"models", "datasets", "spaces", "docs", "api", "settings"})


def is_hub_id(text: str) -> bool:
    """Whether ``text`` can name a model on the Hub: a GPT-2 id without an owner (``gpt2``,
    ``gpt2-medium``) or a well-formed ``owner/name`` whose owner is not one of the Hub's pages.
    Decided from the text alone, without the network."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if text in GPT2_HUB_IDS:
        return True
    owner, slash, _ = text.partition("/")
    if not slash or owner in _HUB_ROUTES:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a config.json for ``repo_id`` (no network)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except HFValidationError:
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers a TCP connection: seconds, not a long retry loop."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def download(repo_id: str, revision: str | None = None) -> Path:
    """Fetch a model (GPT-2, Llama, Qwen2, GPT-1) from the Hugging Face Hub into its standard
    cache; return the folder.

    Files already in the cache (e.g. from ``transformers``) are reused; offline, only the cache
    is consulted.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = not hub_reachable()

    def fetch(filename: str, cached: bool = False) -> Path:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=revision, local_files_only=cached or offline
            )
        )

    def fetch_first(names: tuple[str, ...], cached: bool) -> Path | None:
        """The first of ``names`` that exists (only in the cache if ``cached``), with shards."""
        for name in names:
            try:
                path = fetch(name, cached)
            except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: not cached
                if cached:
                    continue
                raise
            except EntryNotFoundError:  # the repository has no such file
                continue
            if name.endswith(".index.json"):
                for shard in shard_names(path):
                    fetch(shard, cached)
            return path
        return None

    try:
        folder = fetch("config.json").parent
        # Whatever weights are cached already (offline that is all there is), else download.
        if fetch_first(WEIGHT_FILES, cached=True) is None and (
            fetch_first(WEIGHT_FILES, cached=False) is None
        ):
            raise ModelNotFoundError(
                f"the Hub repository {repo_id!r} holds no weights gpt2lab reads"
            )
        for name in TOKENIZER_FILES:
            if fetch_first((name,), cached=True) is None:
                with suppress(LocalEntryNotFoundError):  # offline: the bundled one will do
                    fetch_first((name,), cached=False)
    except (ModelNotFoundError, CheckpointError):
        raise
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{repo_id!r} is not in the Hugging Face cache and the Hub cannot be reached "
            f"(offline?). Connect once to download it, or pass a local model folder"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"no model {repo_id!r} on the Hugging Face Hub") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"cannot download {repo_id!r} from the Hugging Face Hub: {e}"
        ) from None
    return folder
