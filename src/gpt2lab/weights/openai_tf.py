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
import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c
import numpy as np
import torch

from ..config import GPT2Config
from ..errors import CheckpointError, UsageError

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
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7."""
    fields = dict.fromkeys(("dtype", "shard_id", "offset", "size", "crc32c"), 0)
    shape: list[int] = []
    for number, v in _fields(value):
        if number == 2:  # TensorShapeProto: dim=2 {size=1, name=2}
            for dim_number, dim in _fields(v):
                if dim_number == 2:
                    shape.append(next((s for n, s in _fields(dim) if n == 1), 0))
        elif number == 7:
            raise CheckpointError(f"tensor {name} is stored in slices, which is not supported")
        elif 1 <= number <= 6:
            fields[("dtype", "", "shard_id", "offset", "size", "crc32c")[number - 1]] = v
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
    shards = sorted(prefix.parent.glob(f"{prefix.name}.data-*-of-*"))
    if not shards:
        raise CheckpointError(f"no data file {prefix.name}.data-00000-of-00001 beside the index")
    return int(shards[0].name.rsplit("-of-", 1)[1])


def read_tensor(prefix: str | Path, entry: TensorEntry, *, verify: bool = True) -> np.ndarray:
    """One tensor from the data file, checked against the CRC32C recorded in the index."""
    prefix = Path(prefix)
    path = prefix.with_name(f"{prefix.name}.data-{entry.shard_id:05d}-of-{_num_shards(prefix):05d}")
    try:
        with open(path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
            file_size = f.seek(0, 2)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) != entry.size:
        raise CheckpointError(
            f"{path} is truncated: tensor {entry.name} needs bytes "
            f"[{entry.offset}, {entry.offset + entry.size}) but the file has {file_size} bytes; "
            f"download it again"
        )
    if verify and crc32c.crc32c(raw) != entry.crc32c:
        raise CheckpointError(f"tensor {entry.name} in {path} fails its CRC check (corrupted file)")
    expected = entry.dtype.itemsize * int(np.prod(entry.shape, dtype=np.int64))
    if expected != entry.size:
        raise CheckpointError(f"tensor {entry.name}: {entry.size} bytes do not fit {entry.shape}")
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
    try:
        hparams = json.loads((folder / "hparams.json").read_text())
        config = GPT2Config(
            vocab_size=hparams["n_vocab"],
            n_positions=hparams["n_ctx"],
            n_embd=hparams["n_embd"],
            n_layer=hparams["n_layer"],
            n_head=hparams["n_head"],
        )
    except (OSError, ValueError, KeyError, TypeError, UsageError) as e:
        raise CheckpointError(f"cannot read {folder / 'hparams.json'}: {e}") from None
    prefix = checkpoint_prefix(folder)
    state: dict[str, torch.Tensor] = {}
    for name, entry in read_index(prefix.with_name(prefix.name + ".index")).items():
        hf_name = _hf_name(name)
        if hf_name is None:
            raise CheckpointError(f"unexpected tensor {name} in a GPT-2 checkpoint")
        if entry.dtype.kind != "f":
            raise CheckpointError(f"tensor {name} holds {entry.dtype}, not floating point")
        array = read_tensor(prefix, entry).astype(np.float32)
        if ".c_" in hf_name and hf_name.endswith(".weight"):
            if array.ndim != 3 or array.shape[0] != 1:
                raise CheckpointError(
                    f"tensor {name} has shape {array.shape}, expected [1, in, out]"
                )
            array = array[0]  # TF's conv1d kernel [1, in, out] -> [in, out]
        state[hf_name] = torch.from_numpy(array)
    return config, state
