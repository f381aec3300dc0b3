"""Hugging Face GPT-2 folders: config.json + model.safetensors (or pytorch_model.bin), and the Hub.

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
from ..errors import CheckpointError, ModelNotFoundError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # Memory-map the zip format (PyTorch >= 1.6); older files can only be read whole.
        mmap = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read weights from {path}: {reason}") from None
    except Exception as e:  # torch.load's unpickler raises many kinds for a foreign or bad file
        raise CheckpointError(
            f"{path} is not a plain tensor checkpoint ({type(e).__name__}); it may be corrupted "
            "or hold code, which gpt2lab refuses to run"
        ) from None


def _shard_names(index_path: Path) -> list[str]:
    """The weight files a ``*.index.json`` names in its ``weight_map``."""
    try:
        return sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"cannot read shard index {index_path}: {e}") from None


def read_hf_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's weight file(s), sharded or not, as saved."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            state = _read_weight_file(path)
            break
        state = {}
        for shard in _shard_names(path):
            state.update(_read_weight_file(folder / shard))
        break
    else:
        raise CheckpointError(f"{folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"the weights in {folder} are not a flat mapping of name -> tensor")
    return state


def load_hf_folder(folder: Path) -> tuple[GPT2Config, dict[str, torch.Tensor]]:
    return GPT2Config.from_json_file(folder / "config.json"), read_hf_state_dict(folder)


def save_hf_folder(config: GPT2Config, state: dict[str, torch.Tensor], folder: Path) -> None:
    """config.json + model.safetensors that transformers' GPT2LMHeadModel loads unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_json(folder / "config.json")
    tensors = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


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
    """Fetch a GPT-2 model from the Hugging Face Hub into its standard cache; return the folder.

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
                for shard in _shard_names(path):
                    fetch(shard, cached)
            return path
        return None

    try:
        folder = fetch("config.json").parent
        # Whatever weights are cached already (offline that is all there is), else download.
        if fetch_first(WEIGHT_FILES, cached=True) is None and (
            fetch_first(WEIGHT_FILES, cached=False) is None
        ):
            raise ModelNotFoundError(f"the Hub repository {repo_id!r} holds no GPT-2 weights")
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
        raise ModelNotFoundError(
            f"no model {repo_id!r} on the Hugging Face Hub (and no such local folder)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"cannot download {repo_id!r} from the Hugging Face Hub: {e}"
        ) from None
    return folder
