"""The README's training example teaches: short runs warm up quickly, and fine-tuning the
bundled ``tiny`` on the bundled Shakespeare text lowers its held-out loss, offline."""

from __future__ import annotations

import re

import pytest

from gpt2lab.cli import main
from gpt2lab.errors import UsageError
from gpt2lab.train.data import (
    BUNDLED_TEXTS,
    bundled_text,
    bundled_texts,
    group_paragraphs,
    open_data,
)
from gpt2lab.train.trainer import TrainConfig, lr_at, warmup_steps


@pytest.mark.parametrize(
    ("max_steps", "given", "expected"),
    [(30, None, 3), (5, None, 0), (1000, None, 100), (5000, None, 100), (30, 50, 50), (30, 0, 0)],
)
def test_default_warmup_is_at_most_a_tenth_of_the_run(max_steps, given, expected):
    cfg = TrainConfig(data="x", max_steps=max_steps, warmup_steps=given)
    assert warmup_steps(cfg) == expected


def test_a_short_run_reaches_its_learning_rate():
    """30 steps used to be all warmup (100 steps): the lr never got past 0.3 of its value."""
    cfg = TrainConfig(data="x", max_steps=30, lr=1e-3, min_lr=1e-4)
    assert [lr_at(s, cfg) for s in range(3)] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    assert max(lr_at(s, cfg) for s in range(30)) == pytest.approx(1e-3)
    assert lr_at(29, cfg) == pytest.approx(1e-4, rel=0.05)  # decayed to min_lr by the end


def test_help_says_how_the_warmup_and_data_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split())
    assert (
        "--warmup-steps WARMUP_STEPS steps of linear warmup (default: min(100, max_steps // 10))"
        in train_help
    )
    assert "a text bundled with gpt2lab: shakespeare" in train_help


def test_shakespeare_ships_with_the_package():
    assert bundled_texts() == ["shakespeare"]
    text = bundled_text("shakespeare").read_text(encoding="utf-8")
    assert 100_000 <= len(text.encode()) <= 300_000
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert "shakespeare.txt" in (BUNDLED_TEXTS / "README.md").read_text()  # source and licence


def test_bundled_documents_are_runs_of_whole_speeches():
    """Several speakers to a document, so the model learns that one speech follows another."""
    text = bundled_text("shakespeare").read_text(encoding="utf-8")
    documents = group_paragraphs(text, 2000)
    assert "\n\n".join(documents) == text.strip("\n")  # nothing lost, nothing cut
    assert len(documents) == 89 and all(len(d) >= 2000 for d in documents[:-1])
    assert documents[0].startswith("First Citizen:\n") and documents[0].count("\n\nAll:\n") == 6
    assert group_paragraphs("A:\nx\n\nB:\ny\n\n\nC:\nz\n", 5) == ["A:\nx\n\nB:\ny", "C:\nz"]


def test_an_unknown_data_name_says_what_exists(tmp_path):
    with pytest.raises(UsageError, match=r"--data shakespear: no such folder .* \(shakespeare\)"):
        open_data("shakespear", tmp_path)
    with pytest.raises(UsageError, match="no bundled text 'hamlet'; there are: shakespeare"):
        bundled_text("hamlet")


def test_fine_tuning_tiny_on_shakespeare_lowers_its_held_out_loss(tmp_path, monkeypatch, capsys):
    """A few steps from tiny (children's stories) on Shakespeare; the loss at step 0 is printed,
    so the change is visible. The default warmup (1 of 12 steps) lets them count."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--init", "tiny", "--data", "shakespeare", "--out-dir", "bard"]
    argv += ["--block-size", "64", "--batch-size", "4", "--max-steps", "12", "--lr", "1e-3"]
    argv += ["--eval-batches", "4", "--sample-tokens", "8", "--checkpoint-interval", "12"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    before = float(re.search(r"^step 0: val (\d+\.\d+)$", out, re.M).group(1))
    after = float(re.search(r"^step 12: train \d+\.\d+, val (\d+\.\d+)$", out, re.M).group(1))
    assert before > 6  # tiny has never seen anything like it
    assert after < before - 1.0, (before, after)  # 8.42 -> 6.52 when written
    assert (tmp_path / "bard" / "bundled-data" / "shakespeare" / "val.bin").stat().st_size > 5000
