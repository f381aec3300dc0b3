"""Shared fixtures: the ../shared data folder and small Hugging Face reference models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt2lab.config import GPT2Config
from gpt2lab.weights import BUNDLED_MODELS

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_CONFIG = GPT2Config.from_json_file(BUNDLED_MODELS / "tiny" / "config.json")


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test if this checkout has no shared/ beside it."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def make_hf_model(folder: Path, seed: int = 0, **config: int):
    """A random-weight transformers GPT2LMHeadModel built from a config and saved to ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(**config)).eval()
    hf.save_pretrained(folder)
    return hf


@pytest.fixture(scope="session")
def tiny():
    """The bundled trained model (read-only: no test changes its weights)."""
    import gpt2lab

    return gpt2lab.load("tiny")


@pytest.fixture
def cached_tiny(monkeypatch, tiny):
    """`--model tiny` in CLI tests, without reading the file again for each case."""
    import gpt2lab.weights

    real = gpt2lab.weights.load

    def load(name, **options):
        if str(name) == "tiny" and not any(options.values()):
            return tiny
        return real(name, **options)

    monkeypatch.setattr(gpt2lab.weights, "load", load)


WEB_MAX_PROMPT_TOKENS = 64  # the web API tests' limits, small enough to reach
WEB_MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module")
def client(tiny):
    """A TestClient of the web app serving ``tiny`` with the limits above."""
    from fastapi.testclient import TestClient

    from gpt2lab.web.app import create_app

    app = create_app(
        {"tiny": tiny}, max_prompt_tokens=WEB_MAX_PROMPT_TOKENS, max_new_tokens=WEB_MAX_NEW_TOKENS
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def small_hf(tmp_path_factory):
    """(transformers model, its saved folder) for a 2-layer, 64-wide GPT-2 with the real vocab."""
    folder = tmp_path_factory.mktemp("small_hf")
    return make_hf_model(folder, n_layer=2, n_embd=64, n_head=4, n_positions=128), folder


def populate_hub_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """Lay out ``source``'s files as huggingface_hub caches a download of ``repo_id``.

    That is what a user who once downloaded the model (with transformers or gpt2lab) has on
    disk; gpt2lab must find it there with no network.
    """
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, snapshot / name)
    tokenizer_dir = Path(__file__).resolve().parents[1] / "src" / "gpt2lab" / "data" / "tokenizer"
    shutil.copy(tokenizer_dir / "encoder.json", snapshot / "vocab.json")
    shutil.copy(tokenizer_dir / "vocab.bpe", snapshot / "merges.txt")
    return snapshot


def offline_hub_env(cache: Path) -> dict[str, str]:
    """Environment for a subprocess that may only use ``cache`` and never the network."""
    import os

    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(cache.parent / "hf_home"),
    }
