"""OpenAI's original GPT-2 release: a TensorFlow checkpoint, read without TensorFlow.

A checkpoint ``model.ckpt`` is a "tensor bundle":

* ``model.ckpt.data-00000-of-00001``: every tensor's raw bytes, one after another.
* ``model.ckpt.index``: a LevelDB table mapping each tensor name to a ``BundleEntryProto``
  (dtype, shape, which data file, byte offset, size, CRC32C). The table is a footer that points
  at an index block, which points at data blocks of sorted, prefix-compressed key/value pairs.
* ``hparams.json``: n_vocab, n_ctx, n_embd, n_head, n_layer.

We parse the table and the few protobuf fields we need by hand, then check each tensor's CRC.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import torch

from ..config import GPT2Config
from ..errors import CheckpointError, UsageError

# A TF shape dim is an int64 written as a varint, so -1 ("unknown") arrives as 2**64 - 1.
_MAX_DIM = 2**63 - 1
_DATA_FILE = re.compile(r"\.data-(\d{5})-of-(\d{5})")

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles (varints, padded to 40 bytes) + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC32C (4 bytes)
CRC_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum -> numpy dtype (little-endian).
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8", 19: "<f2"}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data file(s). ``crc32c`` is the unmasked checksum."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


def unmask_crc(masked: int) -> int:
    """LevelDB/TensorFlow store CRCs rotated and offset ("masked"); undo that."""
    rot = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- protobuf wire format: just enough to read the two messages we need -----------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError("malformed varint in the checkpoint index")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message; bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} in the checkpoint index")
        if pos > len(buf):
            raise CheckpointError("truncated protobuf message in the checkpoint index")
        out.append((number, value))
    return out


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7.

    A well-formed file has numbers where numbers belong and messages where messages belong; a
    damaged or hostile one may not, so each field's wire type is checked before it is used.
    """
    fields = dict.fromkeys(("dtype", "shard_id", "offset", "size", "crc32c"), 0)
    shape: list[int] = []

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"tensor {name} has a malformed {what} in the checkpoint index")

    for number, v in _fields(value):
        if number == 2:  # TensorShapeProto: dim=2 {size=1, name=2}
            if not isinstance(v, bytes):
                raise bad("shape")
            for dim_number, dim in _fields(v):
                if dim_number != 2:
                    continue
                if not isinstance(dim, bytes):
                    raise bad("shape")
                size = next((s for n, s in _fields(dim) if n == 1), 0)
                if not isinstance(size, int) or size > _MAX_DIM:  # bytes, or negative int64
                    raise bad("shape")
                shape.append(size)
        elif number == 7:
            raise CheckpointError(f"tensor {name} is stored in slices, which is not supported")
        elif 1 <= number <= 6:
            if not isinstance(v, int):
                raise bad(f"field {number}")
            fields[("dtype", "", "shard_id", "offset", "size", "crc32c")[number - 1]] = v
    if fields["crc32c"] > 0xFFFFFFFF:
        raise bad("CRC32C")
    if fields["dtype"] not in DTYPES:
        raise CheckpointError(f"tensor {name} has unsupported TensorFlow dtype {fields['dtype']}")
    return TensorEntry(
        name,
        np.dtype(DTYPES[fields["dtype"]]),
        tuple(shape),
        fields["shard_id"],
        fields["offset"],
        fields["size"],
        unmask_crc(fields["crc32c"]),
    )


# --- the LevelDB table ------------------------------------------------------------------------
def _read_block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The key/value pairs of one table block, after checking its trailer."""
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError("the checkpoint index is truncated (a block runs past its end)")
    block = data[offset:end]
    kind, masked = struct.unpack_from("<BI", data, end)
    if kind != 0:
        raise CheckpointError(f"compressed index blocks (type {kind}) are not supported")
    if crc32c.crc32c(block + bytes([kind])) != unmask_crc(masked):
        raise CheckpointError("the checkpoint index is corrupted (block CRC mismatch)")
    if len(block) < 4:
        raise CheckpointError("malformed block in the checkpoint index")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    entries_end = len(block) - 4 - 4 * n_restarts
    if entries_end < 0:
        raise CheckpointError("malformed block in the checkpoint index")
    pairs: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < entries_end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > entries_end:
            raise CheckpointError("malformed entry in the checkpoint index")
        key = key[:shared] + block[pos : pos + unshared]  # keys share a prefix with the last
        pos += unshared
        pairs.append((key, block[pos : pos + value_len]))
        pos += value_len
    return pairs


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(path: str | Path) -> dict[str, TensorEntry]:
    """Every tensor entry of a ``model.ckpt.index`` file, in the file's (sorted) order."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint index {path}: {e.strerror}") from None
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"{path} is too short to be a checkpoint index")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint index (bad magic number)")
    _, _, pos = _block_handle(footer)  # the metaindex block: unused by tensor bundles
    index_offset, index_size, _ = _block_handle(footer, pos)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _read_block(data, index_offset, index_size):
        offset, size, _ = _block_handle(handle)
        for key, value in _read_block(data, offset, size):
            if key == b"":  # BundleHeaderProto: num_shards=1, endianness=2, version=3
                header = dict(_fields(value))
                if header.get(2, 0) != 0:
                    raise CheckpointError(f"{path} is big-endian, which is not supported")
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError(f"{path} holds a tensor name that is not UTF-8") from None
            entries[name] = _parse_entry(name, value)
    if not entries:
        raise CheckpointError(f"{path} lists no tensors")
    return entries


def _num_shards(prefix: Path) -> int:
    # Only names that end exactly in .data-NNNNN-of-NNNNN: a partial download or a renamed copy
    # (model.ckpt.data-00000-of-00001.part) is not a data file.
    for path in sorted(prefix.parent.glob(f"{prefix.name}.data-*-of-*")):
        match = _DATA_FILE.fullmatch(path.name[len(prefix.name) :])
        if match and int(match[2]) > 0:
            return int(match[2])
    raise CheckpointError(f"no data file {prefix.name}.data-00000-of-00001 beside the index")


def read_tensor(prefix: str | Path, entry: TensorEntry, *, verify: bool = True) -> np.ndarray:
    """One tensor from the data file, checked against the CRC32C recorded in the index."""
    prefix = Path(prefix)
    num_shards = _num_shards(prefix)
    if entry.shard_id >= num_shards:
        raise CheckpointError(f"tensor {entry.name} is in shard {entry.shard_id} of {num_shards}")
    path = prefix.with_name(f"{prefix.name}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
    # Python ints, not np.prod: a damaged shape must not overflow int64 into a "valid" size.
    expected = entry.dtype.itemsize * math.prod(entry.shape)
    if expected != entry.size:
        raise CheckpointError(f"tensor {entry.name}: {entry.size} bytes do not fit {entry.shape}")
    try:
        with open(path, "rb") as f:
            file_size = f.seek(0, 2)
            # Check the range before reading: f.read(size) allocates ``size`` bytes up front,
            # and a damaged index may claim terabytes.
            if entry.offset + entry.size > file_size:
                raise CheckpointError(
                    f"{path} is truncated: tensor {entry.name} needs bytes "
                    f"[{entry.offset}, {entry.offset + entry.size}) but the file has "
                    f"{file_size} bytes; download it again"
                )
            f.seek(entry.offset)
            raw = f.read(entry.size)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) != entry.size:  # the file shrank while we read it
        raise CheckpointError(f"{path} is truncated at tensor {entry.name}; download it again")
    if verify and crc32c.crc32c(raw) != entry.crc32c:
        raise CheckpointError(f"tensor {entry.name} in {path} fails its CRC check (corrupted file)")
    return np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape)


def checkpoint_prefix(folder: Path) -> Path:
    """``folder/model.ckpt``: from the ``checkpoint`` file, else the folder's single index."""
    pointer = folder / "checkpoint"
    if pointer.is_file():
        for line in pointer.read_text(errors="replace").splitlines():
            if line.startswith("model_checkpoint_path:"):
                name = line.split(":", 1)[1].strip().strip('"')
                candidate = folder / Path(name).name
                if candidate.with_name(candidate.name + ".index").is_file():
                    return candidate
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) != 1:
        raise CheckpointError(
            f"{folder} should hold exactly one *.index file, found {len(indexes)}"
        )
    return indexes[0].with_suffix("")


def is_tf_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "hparams.json").is_file() and any(folder.glob("*.index"))


def _hf_name(tf_name: str) -> str | None:
    """model/h3/attn/c_attn/w -> transformer.h.3.attn.c_attn.weight (None if not a weight)."""
    parts = tf_name.split("/")
    if parts[0] != "model" or len(parts) < 2:
        return None
    parts = parts[1:]
    if parts[0] in ("wte", "wpe") and len(parts) == 1:
        return f"transformer.{parts[0]}.weight"
    if parts[0].startswith("h") and parts[0][1:].isdigit():
        parts = ["h", parts[0][1:], *parts[1:]]
    suffix = {"w": "weight", "g": "weight", "b": "bias"}.get(parts[-1])
    if suffix is None:
        return None
    return ".".join(["transformer", *parts[:-1], suffix])


def load_tf_checkpoint(folder: str | Path) -> tuple[GPT2Config, dict[str, torch.Tensor]]:
    """Config and float32 state dict (Hugging Face names, [in, out] layout) of an OpenAI folder."""
    folder = Path(folder)
    config = read_hparams(folder / "hparams.json")
    prefix = checkpoint_prefix(folder)
    state: dict[str, torch.Tensor] = {}
    for entry in read_index(prefix.with_name(prefix.name + ".index")).values():
        hf_name, array = tensor_for(prefix, entry)
        if hf_name in state:  # two TF names for one weight (h0/ln_1/g and h0/ln_1/w)
            raise CheckpointError(f"the checkpoint holds two tensors for {hf_name}")
        state[hf_name] = torch.from_numpy(array)
    return config, state


def read_hparams(path: Path) -> GPT2Config:
    """OpenAI's hparams.json as a GPT2Config; anything unreadable -> CheckpointError."""
    try:
        hparams = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." thousands deep
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise CheckpointError(f"{path} is not valid JSON: {reason}") from None
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    keys = {"n_vocab": "vocab_size", "n_ctx": "n_positions", "n_embd": "n_embd"}
    keys |= {"n_layer": "n_layer", "n_head": "n_head"}
    values: dict[str, Any] = {}
    for key, field in keys.items():
        value = hparams.get(key)
        if isinstance(value, bool) or not isinstance(value, int):  # True would pass as 1
            raise CheckpointError(f"{path}: {key} must be an integer, got {value!r}")
        values[field] = value
    try:
        return GPT2Config(**values)
    except UsageError as e:
        raise CheckpointError(f"{path}: {e}") from None


def tensor_for(prefix: Path, entry: TensorEntry, *, verify: bool = True) -> tuple[str, np.ndarray]:
    """One checkpoint tensor as (Hugging Face name, float32 array in HF's [in, out] layout)."""
    hf_name = _hf_name(entry.name)
    if hf_name is None:
        raise CheckpointError(f"unexpected tensor {entry.name} in a GPT-2 checkpoint")
    if entry.dtype.kind != "f":
        raise CheckpointError(f"tensor {entry.name} holds {entry.dtype}, not floating point")
    array = read_tensor(prefix, entry, verify=verify).astype(np.float32)
    if ".c_" in hf_name and hf_name.endswith(".weight"):
        if array.ndim != 3 or array.shape[0] != 1:
            raise CheckpointError(
                f"tensor {entry.name} has shape {array.shape}, expected [1, in, out]"
            )
        array = array[0]  # TF's conv1d kernel [1, in, out] -> [in, out]
    return hf_name, array
