"""``verify(path)``: is this folder the real GPT-2 124M, bit for bit?

Every tensor of a model folder (Hugging Face safetensors / pytorch_model.bin, sharded or not, or
OpenAI's TensorFlow checkpoint) is read one at a time, checked against the shape GPT-2 124M
needs, checked for NaN/inf, and its sha256 over raw little-endian float32 bytes is compared with
the published record shipped in ``gpt2lab/data/gpt2-124M-sha256.tsv``.

That table comes from a public project's Git LFS pointers. Its 1-D tensors and embeddings are
stored in Hugging Face's layout, but its 2-D layer matrices may be stored transposed relative to
HF's Conv1D ``[in, out]``, so a 2-D tensor matches when either orientation's bytes do.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import GPT2Config
from ..errors import CheckpointError, ModelNotFoundError

# Row statuses, in the order a tensor is checked: present? right shape? finite? right bytes?
OK, MISMATCH, MISSING = "ok", "mismatch", "missing"
BAD_SHAPE, NOT_FINITE = "bad-shape", "not-finite"
STATUSES = (OK, MISMATCH, MISSING, BAD_SHAPE, NOT_FINITE)

GPT2_124M = GPT2Config()  # the defaults are GPT-2 small
RECORDS_FILE = "gpt2-124M-sha256.tsv"
_RECORD_SUFFIX = "_gpt.bin"  # weights/gpt2/<HF name>_gpt.bin in the table
# Entries of the table that are not parameters: the causal-mask buffers (HF saves them in old
# pytorch_model.bin files; gpt2lab computes its own mask) and the conversion's params_gpt.json.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_TIED = "lm_head.weight"  # optional: checked when a file carries it, never "missing"


@dataclass(frozen=True)
class Record:
    """The published checksum of one tensor: sha256 of its raw float32 bytes, and their count."""

    sha256: str
    size: int


@dataclass(frozen=True)
class TensorCheck:
    """One tensor's verdict. ``shape`` is what the file holds (None when missing)."""

    name: str
    status: str
    expected_shape: tuple[int, ...]
    shape: tuple[int, ...] | None = None
    sha256: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "expected_shape": list(self.expected_shape),
            "shape": None if self.shape is None else list(self.shape),
            "sha256": self.sha256,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    """Per-tensor rows plus folder-level problems (a config that is not 124M, foreign tensors)."""

    path: Path
    format: str
    rows: list[TensorCheck]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only when every tensor matches its published checksum and nothing else is off."""
        return not self.problems and all(row.status == OK for row in self.rows)

    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (0 when none)."""
        counted = Counter(row.status for row in self.rows)
        return {status: counted.get(status, 0) for status in STATUSES}

    @property
    def failed(self) -> list[TensorCheck]:
        return [row for row in self.rows if row.status != OK]

    @property
    def summary(self) -> str:
        counts = self.counts()
        n = len(self.rows)
        if self.ok:
            return f"all {n} tensors match GPT-2 124M as released ({self.format})"
        parts = [f"{counts[s]} {s}" for s in STATUSES if s != OK and counts[s]]
        if not parts:
            return f"all {n} tensors match, but: {'; '.join(self.problems)}"
        text = f"{n - counts[OK]} of {n} tensors do not match GPT-2 124M: {', '.join(parts)}"
        return "; ".join([text, *self.problems])

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "ok": self.ok,
            "summary": self.summary,
            "counts": self.counts(),
            "problems": list(self.problems),
            "tensors": [row.to_dict() for row in self.rows],
        }


# --- the published records --------------------------------------------------------------------
def parse_records(text: str) -> dict[str, Record]:
    """HF tensor name -> Record from the tsv's text (``path<TAB>sha256<TAB>size`` lines).

    ``#`` lines are comments (the table's provenance). Non-tensor entries and the mask buffers
    are left out.
    """
    records: dict[str, Record] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[1]) != 64 or not parts[2].isdigit():
            raise CheckpointError(f"line {number} of the checksum table is malformed: {line!r}")
        path, sha256, size = parts
        name = path.rsplit("/", 1)[-1]
        if not name.endswith(_RECORD_SUFFIX):
            continue  # params_gpt.json: the conversion's own config, not a tensor
        name = name[: -len(_RECORD_SUFFIX)]
        if name.endswith(_BUFFER_SUFFIXES):
            continue
        records[name] = Record(sha256.lower(), int(size))
    return records


def read_records(path: str | Path | None = None) -> dict[str, Record]:
    """The records of a tsv file; by default the table shipped with gpt2lab."""
    try:
        if path is None:
            text = (resources.files("gpt2lab") / "data" / RECORDS_FILE).read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        where = path or RECORDS_FILE
        raise CheckpointError(f"cannot read the checksum table {where}: {e}") from None
    return parse_records(text)


# --- hashing ----------------------------------------------------------------------------------
def float32_sha256(array: np.ndarray) -> str:
    """sha256 of an array's values as raw little-endian float32, in C (row-major) order."""
    data = np.ascontiguousarray(array, dtype="<f4")  # no copy when it already is
    return hashlib.sha256(data.data).hexdigest()


def match_orientation(tensor: torch.Tensor, sha256: str) -> tuple[str | None, str]:
    """Which orientation of ``tensor`` has float32 bytes hashing to ``sha256``.

    Returns (``"as stored"`` / ``"transposed"`` / None, the as-stored sha256). The transpose is
    tried only for 2-D tensors and only when the stored order does not match; it is one more
    copy of this one tensor, never of the model.
    """
    array = tensor.detach().cpu().to(torch.float32).numpy()
    digest = float32_sha256(array)
    if digest == sha256:
        return "as stored", digest
    if array.ndim == 2 and float32_sha256(array.T) == sha256:
        return "transposed", digest
    return None, digest


def expected_shapes(config: GPT2Config = GPT2_124M) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a GPT-2 with ``config``, in the model's order."""
    from ..model import GPT2

    with torch.device("meta"):  # shapes only: no memory, no random init
        return {name: tuple(p.shape) for name, p in GPT2(config).named_parameters()}


# --- reading a folder one tensor at a time ---------------------------------------------------
def _safetensors_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """A safetensors file's tensors, each read only when asked for (the file is memory-mapped)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield name, f.get_tensor(name)
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read weights from {path}: {reason}") from None


def _hf_tensors(folder: Path) -> tuple[str, Iterator[tuple[str, torch.Tensor]]]:
    """(format, tensors) of a Hugging Face folder, with the loader's refusals and error messages."""
    from .hf import WEIGHT_FILES, read_weight_file, shard_names

    name = next((n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if name is None:
        raise CheckpointError(f"{folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    files = [folder / s for s in shard_names(folder / name)] if name.endswith(".json") else None
    files = files or [folder / name]
    kind = "safetensors" if name.startswith("model.safetensors") else "pytorch_model.bin"

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for path in files:
            if path.suffix == ".safetensors":
                yield from _safetensors_tensors(path)
                continue
            # Pickles go through the loader's torch.load(weights_only=True), memory-mapped when
            # the file is a zip: tensors stay on disk until hashed.
            state = read_weight_file(path, mmap=True)
            if not isinstance(state, dict):
                raise CheckpointError(f"{path} is not a flat mapping of name -> tensor")
            for key in list(state):
                tensor = state.pop(key)  # drop each one once hashed
                if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{path} is not a flat mapping of name -> tensor")
                yield key, tensor

    return kind + (f", {len(files)} shards" if len(files) > 1 else ""), tensors()


def _tf_tensors(folder: Path) -> tuple[str, Iterator[tuple[str, torch.Tensor]]]:
    from .openai_tf import checkpoint_prefix, read_index, tensor_for

    prefix = checkpoint_prefix(folder)
    entries = read_index(prefix.with_name(prefix.name + ".index"))

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for entry in entries.values():
            # No CRC check here: corrupted bytes should show up as this tensor's mismatch, not
            # stop the whole report. A truncated file still raises CheckpointError.
            name, array = tensor_for(prefix, entry, verify=False)
            yield name, torch.from_numpy(array)

    return "OpenAI TensorFlow checkpoint", tensors()


def _folder(path: str | Path) -> Path:
    from . import run_checkpoint

    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelNotFoundError(f"no model folder at {folder}")
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is a file; pass the model's folder")
    return run_checkpoint(folder) or folder  # a training run stands for its latest checkpoint


def _config_problem(config: GPT2Config, source: str) -> str | None:
    keys = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    diff = [
        f"{k}={getattr(config, k)}" for k in keys if getattr(config, k) != getattr(GPT2_124M, k)
    ]
    return f"{source} describes another model ({', '.join(diff)})" if diff else None


# --- verify -----------------------------------------------------------------------------------
def verify(path: str | Path, records: dict[str, Record] | None = None) -> VerifyReport:
    """Check the model folder at ``path`` against GPT-2 124M's published tensor checksums.

    ``records``: name -> Record to compare with (default: the table shipped with gpt2lab).
    Raises ModelNotFoundError for a path that is not a model folder and CheckpointError for
    files that cannot be read (truncated, corrupted, not weights); a readable folder whose
    tensors differ is not an error but a report with ``ok == False``.
    """
    from . import not_a_model_folder
    from .hf import is_hf_folder, read_config
    from .openai_tf import is_tf_checkpoint, read_hparams

    folder = _folder(path)
    records = read_records() if records is None else records
    problems: list[str] = []
    if is_hf_folder(folder):
        problem = _config_problem(read_config(folder / "config.json"), "config.json")
        kind, tensors = _hf_tensors(folder)
    elif is_tf_checkpoint(folder):
        problem = _config_problem(read_hparams(folder / "hparams.json"), "hparams.json")
        kind, tensors = _tf_tensors(folder)
    else:
        raise not_a_model_folder(folder)
    if problem:
        problems.append(problem)

    shapes = expected_shapes(GPT2_124M)
    checked: dict[str, TensorCheck] = {}
    unexpected: list[str] = []
    for raw_name, tensor in tensors:
        if raw_name.endswith(_BUFFER_SUFFIXES):
            continue
        name = raw_name
        if name != _TIED and not name.startswith("transformer."):
            name = f"transformer.{name}"  # some files drop the prefix; the loader accepts both
        if name == _TIED:
            shape = shapes["transformer.wte.weight"]
        elif name in shapes:
            shape = shapes[name]
        else:
            unexpected.append(raw_name)
            continue
        if name in checked:
            problems.append(f"{name} appears more than once")
            continue
        checked[name] = check_tensor(name, tensor, shape, records.get(name))
        del tensor  # one tensor in memory at a time

    rows = [checked.get(n) or TensorCheck(n, MISSING, shape) for n, shape in shapes.items()]
    if _TIED in checked:
        rows.append(checked[_TIED])
    if unexpected:
        shown = ", ".join(unexpected[:3]) + (", ..." if len(unexpected) > 3 else "")
        problems.append(f"{len(unexpected)} tensors that GPT-2 does not have ({shown})")
    return VerifyReport(folder, kind, rows, problems)


def _all_finite(tensor: torch.Tensor) -> bool:
    # A finite sum proves every value finite (NaN and inf propagate) at a tenth of the cost of
    # isfinite(); only a non-finite sum, which overflow could also cause, needs the full check.
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_tensor(
    name: str, tensor: torch.Tensor, shape: tuple[int, ...], record: Record | None
) -> TensorCheck:
    """One tensor's verdict: shape, then finiteness, then its bytes against ``record``."""
    found = tuple(tensor.shape)
    if found != shape:
        return TensorCheck(name, BAD_SHAPE, shape, found, detail=f"expected {list(shape)}")
    if not tensor.is_floating_point():
        return TensorCheck(name, MISMATCH, shape, found, detail=f"dtype {tensor.dtype}, not float")
    if not _all_finite(tensor):
        return TensorCheck(name, NOT_FINITE, shape, found, detail="contains NaN or inf")
    if record is None:
        return TensorCheck(name, MISMATCH, shape, found, detail="no published checksum")
    orientation, digest = match_orientation(tensor, record.sha256)
    if orientation is None:
        detail = "" if tensor.dtype == torch.float32 else f"stored as {tensor.dtype}"
        return TensorCheck(name, MISMATCH, shape, found, digest, detail)
    detail = "matches the record transposed" if orientation == "transposed" else ""
    return TensorCheck(name, OK, shape, found, digest, detail)
