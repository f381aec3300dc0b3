"""The bundled `tiny` model: loads offline, is what its model card says, and is the fallback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA, offline_hub_env

import gpt2lab
from gpt2lab.train.data import is_validation
from gpt2lab.weights import BUNDLED_MODELS

CARD = BUNDLED_MODELS / "tiny" / "MODEL_CARD.md"


def test_loads_offline_with_the_gpt2_tokenizer(tiny):
    assert tiny.config.vocab_size == 50257
    assert tiny.transformer.wte.weight.dtype == torch.float32
    assert tiny.tokenizer.encode("Mike is quick. He moves") == [16073, 318, 2068, 13, 679, 6100]
    size = (BUNDLED_MODELS / "tiny" / "model.safetensors").stat().st_size
    assert size <= 20_000_000


def test_held_out_loss_is_the_one_on_the_card(tiny):
    """Recompute the held-out loss from the held-out stories (shipped in tests/data): the same
    stories, the same windows."""
    text = (DATA / "tinystories" / "held_out.txt").read_text()
    docs = [d.strip("\n") for d in text.split("<|endoftext|>") if d.strip()]
    held_out = [d for d in docs if is_validation(d, 0.05)]
    ids = [t for d in held_out for t in [*tiny.tokenizer.encode(d), 50256]]
    n = tiny.config.n_positions
    windows = torch.tensor([ids[i : i + n + 1] for i in range(0, len(ids) - n, n)])
    with torch.no_grad():  # equal-length windows: the mean of batch means is the mean
        losses = [tiny(w[:, :-1], w[:, 1:]).item() * len(w) for w in windows.split(32)]
    loss = sum(losses) / len(windows)
    card = float(re.search(r"held-out ([0-9.]+)\*\*", CARD.read_text()).group(1))
    assert loss == pytest.approx(card, abs=2e-3)
    assert loss < 4.0  # far better than chance (ln 50257 = 10.8)


def test_greedy_story_is_the_one_on_the_card(tiny):
    card = CARD.read_text()
    greedy = card.split("Greedy: **Once upon a time**", 1)[1].split("\n## Limits")[0].rstrip()
    assert tiny.generate_text("Once upon a time", 60, greedy=True).rstrip() == greedy


def test_cli_falls_back_to_tiny_offline(tmp_path):
    env = offline_hub_env(tmp_path / "empty-cache")
    exe = Path(sys.executable).with_name("gpt2lab")
    result = subprocess.run(
        [str(exe), "generate", "Once upon a time", "--greedy", "--max-new-tokens", "12"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "using the bundled model 'tiny'" in result.stderr
    expected = gpt2lab.load("tiny").generate_text("Once upon a time", 12, greedy=True)
    assert result.stdout == "Once upon a time" + expected + "\n"
