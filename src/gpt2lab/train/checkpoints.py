"""A run's files: checkpoints (write one whole or not at all, find the latest, read it back)
and the loss log.

    RUN/checkpoints/step-0000200/   model.safetensors, config.json, tokenizer files (a model
                                    folder: ``gpt2lab.load`` reads it) + training_state.pt
    RUN/latest                      the name of the newest complete checkpoint
    RUN/loss.csv                    a row per step (``CSV_FIELDS``)

A checkpoint is written into a temporary folder, renamed into place when complete, and only then
named in ``latest``; so a full disk or a kill at any moment leaves the previous checkpoint
intact, and ``--resume`` continues from it.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError

from ..errors import CheckpointError, OutputError
from ..files import atomic_folder, reason, write_atomic
from ..weights import RUN_POINTER, run_checkpoint

STATE_FILE = "training_state.pt"
CSV_FIELDS = ("step", "tokens", "lr", "train_loss", "val_loss", "elapsed_s")
# What a training state holds (see ``trainer.checkpoint``): enough to continue exactly.
STATE_KEYS = ("step", "elapsed_s", "optimizer", "data_rng", "torch_rng", "scaler", "train_config")

# A full disk surfaces as OSError, or from safetensors and torch.save as their own errors.
WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)


def output_error(what: str, error: BaseException, run_dir: Path) -> OutputError:
    """``what`` failed: say why (e.g. no space left on device) and what is still safe."""
    ckpt = latest_checkpoint(run_dir)
    kept = (
        f"the last complete checkpoint, {ckpt}, is intact: continue from it with --resume once "
        "this is fixed"
        if ckpt is not None
        else "no checkpoint was written yet"
    )
    return OutputError(f"{what}: {reason(error)}; {kept}")


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete the temporary folders of checkpoint writes that were killed (e.g. by SIGKILL)."""
    for tmp in (run_dir / "checkpoints").glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


class Saves(Protocol):
    """What a checkpoint holds the weights of: a GPT2 (a model folder) or an SAE (SAE Lens's)."""

    def save(self, path: str | Path) -> Path: ...


def save_checkpoint(run_dir: Path, model: Saves, state: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint folder atomically, point ``latest`` at it, prune old ones.

    If writing fails (a full disk), the partial folder is removed and ``latest`` still points at
    the previous checkpoint, intact; the error is an OutputError saying so.
    """
    checkpoints = run_dir / "checkpoints"
    name = f"step-{state['step']:07d}"
    final = checkpoints / name
    try:
        # A folder of this name left by an earlier run (that died before moving `latest` to it)
        # is replaced.
        with atomic_folder(final) as tmp:
            model.save(tmp)
            with open(tmp / STATE_FILE, "wb") as f:  # a Python file: a full disk raises OSError
                torch.save(state, f)
        write_atomic(run_dir / RUN_POINTER, name + "\n")
    except WRITE_ERRORS as e:  # (an OutputError too: say what is still safe)
        raise output_error(f"cannot write checkpoint {final}", e, run_dir) from None
    prune_checkpoints(checkpoints, name, keep)
    return final


def prune_checkpoints(checkpoints: Path, newest: str, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints up to ``newest``, delete older ones.

    A later step-* folder is an orphan (written by a run that died before moving ``latest`` to
    it): it must not count against the checkpoint just written, so it is left out.
    """
    done = sorted(p for p in checkpoints.glob("step-*") if p.is_dir() and p.name <= newest)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    path = run_checkpoint(run_dir)
    return path if path is not None and (path / STATE_FILE).is_file() else None


def load_training_state(ckpt: Path) -> dict[str, Any]:
    """The optimizer, step, RNG and settings saved with a checkpoint (its ``training_state.pt``)."""
    path = ckpt / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds for a truncated or foreign file
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read the training state {path}: {first_line}") from None
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise CheckpointError(f"{path} is not a gpt2lab training state")
    return state


# --- the loss log ------------------------------------------------------------------------------
def read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of loss.csv up to a step: a resumed run drops those written after its checkpoint."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]


def write_log(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = CSV_FIELDS) -> None:
    """loss.csv (columns ``fields``: the trainer's, or an SAE run's), whole or not at all."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())
