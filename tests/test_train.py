"""The trainer: it learns, checkpoints lose nothing, resume is exact, DDP equals one process."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import stories

import gpt2lab
from gpt2lab.train.data import prepare
from gpt2lab.train.trainer import TrainConfig, latest_checkpoint, lr_at, make_optimizer, train

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The first 100 KB of TinyStories, prepared with the GPT-2 tokenizer."""
    root = tmp_path_factory.mktemp("train_data")
    text = stories()
    (root / "stories.txt").write_text(text)
    prepare([root / "stories.txt"], root / "data", val_fraction=0.1, progress=False)
    return root / "data"


def small_args(data_dir: Path, out_dir: Path, **overrides: object) -> list[str]:
    settings = {
        "data": data_dir,
        "out_dir": out_dir,
        "n_layer": 1,
        "n_embd": 32,
        "n_head": 2,
        "block_size": 32,
        "batch_size": 4,
        "max_steps": 12,
        "warmup_steps": 2,
        "lr": 3e-3,
        "eval_interval": 6,
        "eval_batches": 2,
        "sample_tokens": 4,
        "checkpoint_interval": 6,
        "seed": 7,
        **overrides,
    }
    return [
        arg for key, value in settings.items() for arg in (f"--{key.replace('_', '-')}", str(value))
    ]


def run_cli(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # identical, deterministic math in every run
    result = subprocess.run(
        [str(BIN / "gpt2lab"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kwargs,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(run_dir: Path) -> list[tuple[str, str, str, str]]:
    with open(run_dir / "loss.csv", newline="") as f:
        return [(r["step"], r["lr"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(f)]


# --- pieces -----------------------------------------------------------------------------------
def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(data="x", lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway down the cosine
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 110))


def test_weight_decay_only_on_matrices():
    model = gpt2lab.GPT2(gpt2lab.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    decay, no_decay = make_optimizer(model, TrainConfig(data="x", weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# --- runs -------------------------------------------------------------------------------------
def test_loss_goes_down_and_the_checkpoint_is_a_model(data_dir, tmp_path):
    cfg = TrainConfig(
        data=str(data_dir),
        out_dir=str(tmp_path / "run"),
        n_layer=2,
        n_embd=32,
        n_head=2,
        block_size=32,
        batch_size=8,
        max_steps=40,
        warmup_steps=4,
        lr=5e-3,
        eval_interval=20,
        eval_batches=4,
        checkpoint_interval=20,
    )
    final = train(cfg, progress=False)
    rows = losses(tmp_path / "run")
    assert [int(r[0]) for r in rows] == list(range(1, 41))
    first, last = float(rows[0][2]), float(rows[-1][2])
    assert first == pytest.approx(math.log(50257), abs=0.3)  # uniform guess at the start
    assert last < first - 3.0
    val = [float(r[3]) for r in rows if r[3]]
    assert len(val) == 2 and val[1] < val[0] < first
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert final == latest_checkpoint(tmp_path / "run") and final.name == "step-0000040"
    model = gpt2lab.load(tmp_path / "run")  # a run folder loads as its latest checkpoint
    assert model.config.n_layer == 2 and not model.training
    ids = torch.tensor([model.tokenizer.encode("Once upon a time")])
    assert model(ids).shape == (1, 4, 50257)


def test_sigkill_then_resume_matches_an_uninterrupted_run(data_dir, tmp_path):
    args = small_args(
        data_dir, tmp_path / "whole", max_steps=40, checkpoint_interval=4, eval_interval=10
    )
    run_cli("train", *args)
    killed = tmp_path / "killed"
    args = small_args(data_dir, killed, max_steps=40, checkpoint_interval=4, eval_interval=10)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(BIN / "gpt2lab"), "train", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpt = latest_checkpoint(killed)
        if ckpt is not None and int(ckpt.name.split("-")[1]) >= 12:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert len(losses(killed)) < 40
    run_cli("train", "--resume", "--out-dir", str(killed))
    assert losses(killed) == losses(tmp_path / "whole")  # same loss, step for step
    assert not list((killed / "checkpoints").glob(".tmp-*"))


def test_sigterm_saves_a_checkpoint_and_resume_finishes(data_dir, tmp_path):
    run = tmp_path / "run"
    args = small_args(
        data_dir, run, max_steps=100000, checkpoint_interval=100000, eval_interval=100000
    )
    proc = subprocess.Popen(
        [str(BIN / "gpt2lab"), "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # wait until the loop is running, however slow the start
        if line.startswith("training"):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "checkpoint saved. Continue with --resume" in err
    step = int(latest_checkpoint(run).name.split("-")[1])
    assert step >= 1 and len(losses(run)) == step
    run_cli("train", "--resume", "--out-dir", str(run), "--max-steps", str(step + 2))
    assert len(losses(run)) == step + 2


def test_two_ddp_processes_match_one_process_with_accumulation(data_dir, tmp_path):
    """gloo on CPU: 2 processes x batch 4 == 1 process x 2 micro-batches of 4."""
    run_cli("train", *small_args(data_dir, tmp_path / "one", max_steps=6, grad_accum=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(BIN / "torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gpt2lab.cli",
        "train",
        *small_args(data_dir, tmp_path / "two", max_steps=6, grad_accum=1),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[0] for r in one] == [r[0] for r in two] == [str(s) for s in range(1, 7)]
    for a, b in zip(one, two):
        assert float(a[2]) == pytest.approx(float(b[2]), abs=1e-4)
    w1 = gpt2lab.load(tmp_path / "one").state_dict()
    w2 = gpt2lab.load(tmp_path / "two").state_dict()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-4) for k in w1)


def test_fine_tune_from_a_model_folder(data_dir, tmp_path, small_hf):
    args = small_args(data_dir, tmp_path / "ft", max_steps=4, eval_interval=4)
    args += ["--init", str(small_hf[1]), "--lr", "1e-4"]
    run_cli("train", *args)
    tuned = gpt2lab.load(tmp_path / "ft")
    base = gpt2lab.load(small_hf[1])
    assert tuned.config.replace(dropout=0.0) == base.config  # the model keeps its shape
    assert not torch.equal(tuned.transformer.wte.weight, base.transformer.wte.weight)


def test_toml_config_with_flag_overrides(data_dir, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'data = "{data_dir}"\nout_dir = "{tmp_path / "run"}"\nn_layer = 1\n'
        "n_embd = 32\nn_head = 2\nblock_size = 32\nbatch_size = 4\nmax_steps = 50\n"
        "eval_interval = 2\neval_batches = 1\nsample_tokens = 3\n"
    )
    run_cli("train", "--config", str(toml), "--max-steps", "3")
    assert len(losses(tmp_path / "run")) == 3


def test_clear_errors(data_dir, tmp_path):
    result = run_cli(
        "train",
        "--resume",
        "--out-dir",
        str(tmp_path / "none"),
        "--data",
        str(data_dir),
        check=False,
    )
    assert result.returncode == 2 and "nothing to resume" in result.stderr
    run_cli("train", *small_args(data_dir, tmp_path / "run", max_steps=2, eval_interval=2))
    again = run_cli("train", *small_args(data_dir, tmp_path / "run", max_steps=2), check=False)
    assert again.returncode == 2 and "--resume" in again.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "x"\nlearning_rate = 3\n')
    result = run_cli("train", "--config", str(bad), check=False)
    assert result.returncode == 2 and "learning_rate" in result.stderr
    result = run_cli("train", "--data", str(tmp_path), check=False)
    assert result.returncode == 2 and "gpt2lab prepare" in result.stderr
