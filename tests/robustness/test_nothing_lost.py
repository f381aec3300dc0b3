"""Nothing is lost: a full disk, SIGKILL at any moment, Ctrl-C. Whatever was complete on disk
before stays complete and loadable, nothing half-written is left behind, and the work goes on.

- training: a checkpoint write that fails (no space left on device) leaves the previous
  checkpoint intact and loadable, no temporary folder, one clear error; ``--resume`` then
  reproduces the uninterrupted run. SIGKILL at random moments, many of them in the middle of a
  checkpoint write: the latest checkpoint always loads and ``--resume`` continues.
  (tests/test_train.py kills a run once, between checkpoints, and checks that the resumed run
  equals an uninterrupted one step for step; this file does not repeat that.)
- ``prepare``: tests/test_train_data.py interrupts it between chunks (Ctrl-C) and resumes to the
  same files; here a chunk is written but the disk fills before it is committed.
- ``eval``: results (``--json``, ``eval paper --out``) appear only when complete; an interrupted
  run or a failed write leaves an earlier file as it was.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import stories as first_stories
from safetensors import SafetensorError
from test_train import small_args

import gpt2lab
from gpt2lab.cli import main
from gpt2lab.errors import OutputError
from gpt2lab.train import trainer
from gpt2lab.train.data import TokenData, prepare
from gpt2lab.train.trainer import latest_checkpoint, load_training_state

BIN = Path(sys.executable).parent


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # "No space left on device"


@pytest.fixture(scope="module")
def stories(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stories")
    text = first_stories(16_000)
    (root / "stories.txt").write_text(text, encoding="utf-8")
    return root / "stories.txt"


@pytest.fixture(scope="module")
def data_dir(stories) -> Path:
    """16 KB of TinyStories, made by `gpt2lab prepare` (as a user would)."""
    out = stories.parent / "data"
    assert main(["prepare", str(stories), "--out", str(out), "--val-fraction", "0.1"]) == 0
    return out


def train_args(data: Path, out: Path, **overrides: object) -> list[str]:
    """test_train's small run, 2 layers deep, checkpointing every 2 of its 6 steps."""
    settings = {"n_layer": 2, "max_steps": 6, "eval_interval": 3, "eval_batches": 1}
    settings |= {"sample_tokens": 2, "checkpoint_interval": 2}
    return small_args(data, out, **(settings | overrides))


def loss_rows(run: Path) -> list[tuple[str, str, str]]:
    with open(run / "loss.csv", newline="") as f:
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(f)]


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders (every writer in gpt2lab names them .something)."""
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> list[tuple[str, str, str]]:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(["train", *train_args(data_dir, run)]) == 0
    return loss_rows(run)


# --- (a) a full disk while a checkpoint is written ---------------------------------------------
def _fail_safetensors(monkeypatch, calls):
    """The second model.safetensors: half written, then safetensors' own disk-full error."""
    import gpt2lab.weights.hf as hf

    real = hf.save_file

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) < 2:
            return real(tensors, path, metadata=metadata)
        Path(path).write_bytes(b"\0" * 4096)
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(hf, "save_file", save_file)


def _fail_torch_save(monkeypatch, calls):
    """The second training_state.pt: some bytes, then ENOSPC from the file."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) < 2:
            return real(obj, f, *args, **kwargs)
        f.write(b"PK\3\4" + b"\0" * 4096)
        raise enospc()

    monkeypatch.setattr(torch, "save", save)


def _fail_pointer(monkeypatch, calls):
    """The second checkpoint is complete and renamed into place, but `latest` cannot be
    updated: ENOSPC on the rename of its temporary file."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "latest":
            calls.append(dst)
            if len(calls) >= 2:
                raise enospc()
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("fail", [_fail_safetensors, _fail_torch_save, _fail_pointer])
def test_full_disk_during_a_checkpoint_loses_nothing(
    capsys, monkeypatch, data_dir, tmp_path, uninterrupted, fail
):
    run = tmp_path / "run"
    calls: list = []
    with monkeypatch.context() as patch:
        fail(patch, calls)
        code = main(["train", *train_args(data_dir, run)])
    assert len(calls) == 2, "the failure was not injected where intended"
    _, err = capsys.readouterr()
    # one clear error naming the cause and the intact checkpoint, no traceback
    assert code == 1 and "Traceback" not in err
    [message] = [line for line in err.splitlines() if line.startswith("gpt2lab")]
    assert message.startswith("gpt2lab: error: cannot write checkpoint ")
    assert "step-0000004" in message and "No space left on device" in message
    assert "step-0000002, is intact" in message and "--resume" in message
    # the previous checkpoint is the latest, complete and loadable; nothing half-written
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step-0000002"
    model = gpt2lab.load(run)
    assert model.config.n_layer == 2 and model.config.n_embd == 32
    assert load_training_state(ckpt)["step"] == 2
    assert leftovers(run) == []
    # resuming gives exactly the run that was never interrupted
    assert main(["train", "--resume", "--out-dir", str(run)]) == 0
    assert loss_rows(run) == uninterrupted
    assert latest_checkpoint(run).name == "step-0000006" and leftovers(run) == []
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-0000004",
        "step-0000006",
    ]


def test_python_api_raises_output_error_and_keeps_the_checkpoint(monkeypatch, data_dir, tmp_path):
    cfg = trainer.TrainConfig(
        data=str(data_dir),
        out_dir=str(tmp_path / "run"),
        n_layer=2,
        n_embd=32,
        n_head=2,
        block_size=32,
        batch_size=4,
        max_steps=4,
        eval_batches=1,
        sample_tokens=2,
        checkpoint_interval=2,
    )
    _fail_torch_save(monkeypatch, [])
    with pytest.raises(OutputError, match="No space left on device") as info:
        trainer.train(cfg, progress=False)
    assert isinstance(info.value, OSError)  # code that catches OSError still catches it
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"
    assert leftovers(tmp_path / "run") == []


def test_an_orphan_checkpoint_never_costs_the_latest_one(monkeypatch, data_dir, tmp_path):
    """`latest` could not be moved to step 4 (full disk): step-0000004 is an orphan. A resumed
    run that stops earlier (step 3) with keep_checkpoints=1 must keep step 3, which `latest`
    names, not prune it because the orphan sorts after it."""
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _fail_pointer(patch, [])
        assert main(["train", *train_args(data_dir, run, keep_checkpoints=1)]) == 1
    assert (run / "checkpoints" / "step-0000004").is_dir()
    assert main(["train", "--resume", "--out-dir", str(run), "--max-steps", "3"]) == 0
    assert latest_checkpoint(run).name == "step-0000003"
    assert gpt2lab.load(run).config.n_layer == 2


def _mount_small_disk(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def test_a_really_full_disk(capsys, data_dir, tmp_path, uninterrupted):
    """The same on a real 30 MB file system: the first checkpoint (~21 MB) fits, the second
    does not. (Needs permission to mount a tmpfs; skipped elsewhere.)"""
    disk = tmp_path / "disk"
    if not _mount_small_disk(disk, "30m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        code = main(["train", *train_args(data_dir, disk / "run")])
        _, err = capsys.readouterr()
        assert code == 1 and "Traceback" not in err
        assert "gpt2lab: error: cannot write checkpoint" in err
        assert "No space left on device" in err
        assert latest_checkpoint(disk / "run").name == "step-0000002"
        assert gpt2lab.load(disk / "run").config.n_layer == 2
        assert leftovers(disk / "run") == []
        shutil.copytree(disk / "run", tmp_path / "run")  # somewhere with room
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    run = tmp_path / "run"
    assert main(["train", "--resume", "--out-dir", str(run)]) == 0
    assert loss_rows(run) == uninterrupted


# --- (b) SIGKILL at any moment ------------------------------------------------------------------
def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [str(BIN / "gpt2lab"), "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_training(proc: subprocess.Popen) -> None:
    for line in proc.stdout:  # however slow the start (imports, data, model)
        if line.startswith("training"):
            return
    pytest.fail("the run ended before training started")


def _kill_while_writing(proc: subprocess.Popen, run: Path, rng: random.Random) -> bool:
    """SIGKILL as soon as (plus up to 20 ms) a checkpoint's temporary folder exists, once the
    run has at least one complete checkpoint (else every run could die in its first write)."""
    checkpoints = run / "checkpoints"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if latest_checkpoint(run) is None:
            continue
        if any(p.name.startswith(".tmp-") for p in checkpoints.iterdir()):
            time.sleep(rng.uniform(0, 0.02))
            proc.kill()
            return True
    proc.kill()
    return False


@pytest.mark.slow  # five runs killed and resumed; tests/test_train.py kills one in the default run
def test_sigkill_at_random_moments_then_resume(data_dir, tmp_path):
    seed = int(os.environ.get("GPT2LAB_KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    why = f"(replay with GPT2LAB_KILL_SEED={seed})"
    run = tmp_path / "run"
    # a checkpoint every step: most of the time goes into writing one
    args = train_args(
        data_dir, run, max_steps=1000, checkpoint_interval=1, eval_interval=1000, warmup_steps=2
    )
    steps = [0]
    caught_mid_write = 0
    for kill in range(5):
        resume = latest_checkpoint(run) is not None
        proc = _start(["--resume", "--out-dir", str(run)] if resume else args)
        _wait_for_training(proc)
        if kill % 2:
            time.sleep(rng.uniform(0, 1.0))  # anywhere: a step, a log write, a checkpoint
            proc.kill()
        else:
            caught_mid_write += _kill_while_writing(proc, run, rng)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill {why}"
        ckpt = latest_checkpoint(run)
        if ckpt is None:  # killed before its first checkpoint: nothing to keep yet
            assert steps[-1] == 0, why
            continue
        # the latest checkpoint is always whole: weights, tokenizer and training state
        model = gpt2lab.load(run)
        assert model.config.n_layer == 2 and model.tokenizer is not None, why
        assert load_training_state(ckpt)["step"] == step_of(ckpt), why
        assert step_of(ckpt) >= steps[-1], f"a checkpoint went back in time {why}"
        steps.append(step_of(ckpt))
    assert caught_mid_write >= 2, f"no kill landed in a checkpoint write {why}"
    assert steps[-1] > 0, why
    last = steps[-1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(BIN / "gpt2lab"), "train", "--resume", "--out-dir", str(run), "--max-steps",
         str(last + 3)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert [int(r[0]) for r in loss_rows(run)] == list(range(1, last + 4)), why
    assert latest_checkpoint(run).name == f"step-{last + 3:07d}"
    assert leftovers(run) == [], why  # the temporary files of killed writes are gone
    assert gpt2lab.load(run).config.n_layer == 2


# --- (c) prepare ------------------------------------------------------------------------------
def test_prepare_with_a_full_disk_then_again_gives_the_same_files(monkeypatch, stories, tmp_path):
    """A chunk's tokens are written, then the disk fills before the chunk is committed: the
    rerun drops the uncommitted bytes and ends with exactly the files of an uninterrupted run.
    (Interrupting between chunks: tests/test_train_data.py.)"""
    from gpt2lab.train import data as data_module

    whole, again = tmp_path / "whole", tmp_path / "again"
    prepare([stories], whole, chunk_documents=5, progress=False)
    real = data_module.write_atomic
    commits: list[Path] = []

    def commit(path, text):
        commits.append(path)
        if len(commits) == 3:  # the third chunk: its tokens are on disk, not yet committed
            raise enospc()
        real(path, text)

    monkeypatch.setattr(data_module, "write_atomic", commit)
    with pytest.raises(OutputError) as info:
        prepare([stories], again, chunk_documents=5, progress=False)
    message = str(info.value)
    assert "No space left on device" in message and "run the same command again" in message
    assert not (again / "meta.json").exists()  # no result until complete
    committed = json.loads((again / "progress.json").read_text())["state"]
    assert committed["doc"] == 10  # two chunks of 5
    on_disk = (again / "train.bin.partial").stat().st_size
    assert on_disk > 2 * committed["train_tokens"]  # and the uncommitted third one
    monkeypatch.setattr(data_module, "write_atomic", real)
    prepare([stories], again, chunk_documents=5, progress=False)
    for name in ("train.bin", "val.bin"):
        assert (again / name).read_bytes() == (whole / name).read_bytes()
    assert TokenData.open(again).meta["train_tokens"] == TokenData.open(whole).meta["train_tokens"]
    assert sorted(p.name for p in again.iterdir()) == ["meta.json", "train.bin", "val.bin"]


# --- (d) eval results only when complete -------------------------------------------------------
PTB = " no it was n't black monday \n but it was n't a good day \n" * 30


@pytest.fixture
def eval_data(tmp_path, monkeypatch):
    """A small PTB-format file in gpt2lab's layout, and no other data to be found."""
    root = tmp_path / "evaldata"
    (root / "ptb").mkdir(parents=True)
    (root / "ptb" / "ptb.test.txt").write_text(PTB)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


def _interrupt_scoring(monkeypatch, after: int, exc: BaseException) -> list[int]:
    from gpt2lab.evals import scoring

    real = scoring._score_batch
    batches: list[int] = []

    def score_batch(*args, **kwargs):
        batches.append(1)
        if len(batches) > after:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_score_batch", score_batch)
    return batches


EVAL = ["--model", "tiny", "--context", "16", "--batch-size", "1", "--no-download"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("out of memory")])
def test_interrupted_eval_leaves_no_json_and_keeps_the_old_one(
    capsys, monkeypatch, eval_data, tmp_path, exc
):
    out, new = tmp_path / "out.json", tmp_path / "new.json"
    out.write_text('{"earlier": "results"}\n')
    argv = ["eval", "ptb", "--data-dir", str(eval_data), *EVAL, "--limit", "4"]
    for target in (out, new):
        with monkeypatch.context() as patch:
            batches = _interrupt_scoring(patch, 2, exc)
            if isinstance(exc, KeyboardInterrupt):
                assert main([*argv, "--json", str(target)]) == 130
                assert "gpt2lab: interrupted" in capsys.readouterr().err
            else:
                with pytest.raises(RuntimeError, match="out of memory"):
                    main([*argv, "--json", str(target)])
        assert len(batches) == 3  # 2 of 4 windows scored, the 3rd interrupted
    assert out.read_text() == '{"earlier": "results"}\n'
    assert not new.exists()
    assert leftovers(tmp_path) == []
    # uninterrupted, the same command writes the complete results
    assert main([*argv, "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["detokenized"] for r in results] == [True, False]
    assert all(r["units"] > 0 for r in results)


def test_eval_json_on_a_full_disk_keeps_the_old_file(capsys, monkeypatch, eval_data, tmp_path):
    from gpt2lab import files

    out = tmp_path / "out.json"
    out.write_text('{"earlier": "results"}\n')

    def fsync(fd):
        raise enospc()

    monkeypatch.setattr(files.os, "fsync", fsync)
    argv = ["eval", "ptb", "--data-dir", str(eval_data), *EVAL, "--limit", "2"]
    code = main([*argv, "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    [message] = [line for line in err.splitlines() if line.startswith("gpt2lab")]
    assert message.startswith(f"gpt2lab: error: cannot write {out}")
    assert "No space left on device" in message
    assert out.read_text() == '{"earlier": "results"}\n'
    assert leftovers(tmp_path) == []


def test_eval_paper_report_is_whole_or_the_old_one(capsys, monkeypatch, eval_data, tmp_path):
    from gpt2lab import files

    report = tmp_path / "report"
    argv = ["eval", "paper", "--data-dir", str(eval_data), *EVAL, "--limit", "2"]
    assert main([*argv, "--out", str(report)]) == 0
    before = {name: (report / name).read_text() for name in ("report.md", "report.json")}
    assert json.loads(before["report.json"])["results"]
    # interrupted mid-run: nothing written
    with monkeypatch.context() as patch:
        _interrupt_scoring(patch, 1, KeyboardInterrupt())
        assert main([*argv, "--out", str(report)]) == 130
    # the disk fills while the second file is staged: neither file changes
    real_fsync, synced = os.fsync, []

    def fsync(fd):
        synced.append(fd)
        if len(synced) == 2:
            raise enospc()
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(files.os, "fsync", fsync)
        assert main([*argv, "--limit", "1", "--out", str(report)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert {name: (report / name).read_text() for name in before} == before
    assert leftovers(tmp_path) == []
