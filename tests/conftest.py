"""Shared fixtures: the data the tests read and small Hugging Face reference models.

Tests read the excerpts shipped in tests/data (``shipped``). A few need whole files that only a
``../shared`` folder beside the repository has (``shared_path``); those skip without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import gpt2lab
from gpt2lab.config import GPT2Config
from gpt2lab.weights import BUNDLED_MODELS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = ROOT / "tests" / "data"
PACKAGE_DATA = Path(gpt2lab.__file__).parent / "data"
BUNDLED_TOKENIZER = PACKAGE_DATA / "tokenizer"
EVAL_SAMPLES = PACKAGE_DATA / "evals"
TINY_CONFIG = GPT2Config.from_json_file(BUNDLED_MODELS / "tiny" / "config.json")
# The first 99,928 characters (789 whole stories) of TinyStories' 2 MiB sample.
STORIES = DATA / "tinystories" / "first_100k.txt"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores (torch and its subprocesses),
    not all of them: N workers x all cores would make them fight over the CPU."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", threads)


def shared_path(*parts: str) -> Path:
    """A whole file under ../shared/data, or skip: only a checkout with ../shared has it."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"needs the full file ../shared/data/{'/'.join(parts)} (not shipped)")
    return path


def stories(chars: int | None = None) -> str:
    """The start of TinyStories' 2 MiB sample (at most 99,928 characters): ``chars`` of it."""
    return STORIES.read_text(encoding="utf-8")[:chars]


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
    shutil.copy(BUNDLED_TOKENIZER / "encoder.json", snapshot / "vocab.json")
    shutil.copy(BUNDLED_TOKENIZER / "vocab.bpe", snapshot / "merges.txt")
    return snapshot


# A proxy nothing listens on: any HTTP(S) request of a subprocess fails at once, as offline.
NO_NETWORK = {
    name: "http://127.0.0.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
}


def offline_hub_env(cache: Path) -> dict[str, str]:
    """Environment for a subprocess that may only use ``cache`` and never the network."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    return {
        **env,
        **NO_NETWORK,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(cache.parent / "hf_home"),
    }


def fresh_user_env(home: Path, cache: Path) -> dict[str, str]:
    """``offline_hub_env`` for a new user: an empty ``home`` (so no ~/.cache) beside ``cache``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in offline_hub_env(cache).items() if not k.startswith("XDG_")}
    return {**env, "HOME": str(home)}
